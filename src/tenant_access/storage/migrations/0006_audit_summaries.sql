-- Summaries of refused requests: one record stands for this many requests (1 for every other record).
-- Retention and export need no index of their own: record ids begin with their creation time in
-- milliseconds (domain/keys.py ordered_id), so a time range is a range of the primary key.
ALTER TABLE audit_events ADD COLUMN occurrences INTEGER NOT NULL DEFAULT 1;
