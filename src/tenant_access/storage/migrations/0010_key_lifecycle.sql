-- Key lifecycle (issue 14): how each key version is used, and the rotation policy of each access
-- configuration with its scheduler state. Portable SQL: the same file serves SQLite and PostgreSQL.

-- One row per key version that was ever used to authenticate. Replicas add their batched counts
-- (uses = uses + n) and keep the latest minute (last_used only moves forward), so concurrent
-- flushes from any number of processes merge without coordination. No foreign key: a flush that
-- races with the deletion of its service must not fail; the rows go with their service.
CREATE TABLE key_usage (
    version_id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    uses BIGINT NOT NULL,
    last_used TEXT NOT NULL
);

CREATE INDEX key_usage_by_service ON key_usage (service_id);

-- A rotation policy (Key Vault's shape plus gracePeriod) as the JSON document the API accepted,
-- and what the scheduler needs: when its next action is due, and how the last one went.
CREATE TABLE rotation_policies (
    service_id TEXT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    access_name TEXT NOT NULL,
    document TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    next_due TEXT,
    last_run_at TEXT,
    last_outcome TEXT,
    blocked_since TEXT,
    PRIMARY KEY (service_id, access_name)
);

CREATE INDEX rotation_policies_by_due ON rotation_policies (next_due);
