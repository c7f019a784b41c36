-- Events (issue 15): the transactional outbox, webhook subscriptions and their deliveries.
--
-- event_outbox: one row per event, inserted in the transaction of the change it announces (one
-- INSERT). position orders the events of one configuration (order_key): it is the previous
-- position + 1, computed under the configuration's lock, so it is commit order. fanned_out is 0
-- until a delivery worker has queued the event for every subscription. Rows are kept for the
-- event retention (tail, /_emulator/events) and then pruned once no delivery needs them.
CREATE TABLE event_outbox (
    id TEXT PRIMARY KEY,
    order_key TEXT NOT NULL,
    service_key TEXT NOT NULL,
    position INTEGER NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    fanned_out INTEGER NOT NULL DEFAULT 0,
    UNIQUE (order_key, position)
);

CREATE INDEX event_outbox_pending ON event_outbox (fanned_out, id);

-- Subscriptions belong to a service by its lower-cased resource id, not by a foreign key: the
-- service-deleted event must still find them. service_ref: the service's names as a JSON array.
-- secret is encrypted at rest like the keys.
CREATE TABLE event_subscriptions (
    service_key TEXT NOT NULL,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    service_ref TEXT NOT NULL,
    destination TEXT NOT NULL,
    event_types TEXT NOT NULL,
    delivery_schema TEXT NOT NULL,
    secret TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (service_key, name_key)
);

-- One row per (event, subscription) still to deliver, or dead-lettered (state 'dead', with the
-- reason). A delivered row is deleted. claimed_by/claimed_until: the replica sending it now; a
-- claim that outlives claimed_until (a replica that died) is taken over by another.
CREATE TABLE event_deliveries (
    event_id TEXT NOT NULL,
    subscription_key TEXT NOT NULL,
    order_key TEXT NOT NULL,
    position INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    first_at TEXT NOT NULL,
    next_at TEXT NOT NULL,
    claimed_by TEXT,
    claimed_until TEXT,
    last_error TEXT,
    PRIMARY KEY (event_id, subscription_key)
);

CREATE INDEX event_deliveries_due ON event_deliveries (state, next_at);
CREATE INDEX event_deliveries_order ON event_deliveries (subscription_key, order_key, state, position);

-- The queues that have (or had) pending deliveries, one per subscription and configuration: a claim
-- reads the first rows of each (an index range), so its cost does not grow with the backlog.
CREATE TABLE event_queues (
    subscription_key TEXT NOT NULL,
    order_key TEXT NOT NULL,
    PRIMARY KEY (subscription_key, order_key)
);
