-- Subscriptions an operator declared (tenant-access subscriptions add), so that Resource Manager
-- clients such as the Azure CLI find a subscription to sign in to before it holds a service.
-- Subscriptions that hold services need no row. id_key is the id lower-cased: Azure compares ids
-- case-insensitively, and the id is kept as it was first given.
CREATE TABLE subscriptions (
    id_key TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
