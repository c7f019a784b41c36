-- Idempotency keys of regenerate requests (see domain/idempotency.py). A row is written in the
-- same transaction as the rotation it describes, so a crash can never keep one without the other.
-- Keys are scoped to the principal that sent them; rows past expires_at are purged on later writes.
CREATE TABLE idempotency_keys (
    principal TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    operation TEXT NOT NULL,
    target TEXT NOT NULL,
    version_id TEXT NOT NULL,
    version_created_at TEXT NOT NULL,
    slot TEXT NOT NULL CHECK (slot IN ('primary', 'secondary')),
    previous_version_id TEXT NOT NULL,
    etag TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (principal, idempotency_key)
);

CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
