-- Service principals that may sign in at the token endpoint. Only a hash of the secret is kept.
CREATE TABLE service_principals (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    scope TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    disabled_at TEXT
);
