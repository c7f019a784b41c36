-- The audit trail. No foreign key to services: records outlive what they describe.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    principal TEXT NOT NULL,
    role TEXT NOT NULL,
    scope TEXT NOT NULL,
    operation TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    client TEXT NOT NULL,
    subscription_key TEXT,
    resource_group_key TEXT,
    service_key TEXT,
    old_version_id TEXT,
    new_version_id TEXT,
    detail TEXT
);

CREATE INDEX audit_events_by_service ON audit_events (subscription_key, resource_group_key, service_key, at);

-- Facts about the store itself, e.g. the check value that proves the master key is the right one.
CREATE TABLE store_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
