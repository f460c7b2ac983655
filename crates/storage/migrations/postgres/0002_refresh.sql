-- The refresh engine: the connections table is the schedule, and each row carries its own lease.
ALTER TABLE connections
    ADD COLUMN next_refresh_at  BIGINT,
    ADD COLUMN lease_owner      TEXT,
    ADD COLUMN lease_until      BIGINT,
    ADD COLUMN grant_in_flight  BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN last_error       TEXT,
    ADD COLUMN reauth_warned_at BIGINT;
-- Connections stored before the engine existed are looked at once right away; the engine then computes
-- their schedule from the integration's timing (no grant is sent unless one is actually due).
UPDATE connections SET next_refresh_at = updated_at;
CREATE INDEX connections_due ON connections (status, next_refresh_at);
CREATE INDEX connections_leased ON connections (lease_until) WHERE lease_until IS NOT NULL;

-- Webhook events, written in the same transaction as the state change they announce. The delivery columns
-- let a deliverer claim rows (lease_until, FOR UPDATE SKIP LOCKED) and retry (attempts, next_attempt_at).
CREATE TABLE outbox (
    id              UUID PRIMARY KEY,
    -- Insertion order, to keep events of one millisecond in the order they were written.
    seq             BIGINT  GENERATED ALWAYS AS IDENTITY,
    client_id       UUID    NOT NULL,
    event_type      TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    delivered_at    BIGINT,
    lease_until     BIGINT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
