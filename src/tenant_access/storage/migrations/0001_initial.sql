-- Portable SQL: the same file creates the SQLite and the PostgreSQL schema.
-- Names are stored twice: as given (for display) and lower-cased (for lookup), because Azure
-- compares resource names case-insensitively.
CREATE TABLE services (
    id TEXT PRIMARY KEY,
    subscription_key TEXT NOT NULL,
    resource_group_key TEXT NOT NULL,
    name_key TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    name TEXT NOT NULL,
    location TEXT NOT NULL,
    sku_name TEXT NOT NULL,
    sku_capacity INTEGER NOT NULL,
    publisher_email TEXT NOT NULL,
    publisher_name TEXT NOT NULL,
    tags TEXT NOT NULL,
    etag TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (subscription_key, resource_group_key, name_key)
);

CREATE TABLE access_configs (
    service_id TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    name TEXT NOT NULL CHECK (name IN ('access', 'gitAccess')),
    principal_id TEXT NOT NULL,
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    etag TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    primary_version_id TEXT NOT NULL,
    secondary_version_id TEXT NOT NULL,
    PRIMARY KEY (service_id, name)
);

-- One row per generation of a key. The secret of a superseded version is erased (set to NULL):
-- the row stays as history for audit, the key itself does not outlive its use.
CREATE TABLE key_versions (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    access_name TEXT NOT NULL,
    slot TEXT NOT NULL CHECK (slot IN ('primary', 'secondary')),
    secret TEXT,
    origin TEXT NOT NULL,
    created_at TEXT NOT NULL,
    superseded_at TEXT
);

CREATE INDEX key_versions_by_config ON key_versions (service_id, access_name, slot);
