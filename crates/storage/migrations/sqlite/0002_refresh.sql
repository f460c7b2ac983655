-- The refresh engine: the connections table is the schedule, and each row carries its own lease.
ALTER TABLE connections ADD COLUMN next_refresh_at INTEGER;
ALTER TABLE connections ADD COLUMN lease_owner TEXT;
ALTER TABLE connections ADD COLUMN lease_until INTEGER;
ALTER TABLE connections ADD COLUMN grant_in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN last_error TEXT;
ALTER TABLE connections ADD COLUMN reauth_warned_at INTEGER;
-- Connections stored before the engine existed are looked at once right away; the engine then computes
-- their schedule from the integration's timing (no grant is sent unless one is actually due).
UPDATE connections SET next_refresh_at = updated_at;
CREATE INDEX connections_due ON connections (status, next_refresh_at);
CREATE INDEX connections_leased ON connections (lease_until) WHERE lease_until IS NOT NULL;

-- Webhook events, written in the same transaction as the state change they announce. The delivery columns
-- let a deliverer claim rows (lease_until) and retry (attempts, next_attempt_at) later.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    client_id       TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    delivered_at    INTEGER,
    lease_until     INTEGER
) STRICT;
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
