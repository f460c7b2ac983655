-- Each client's webhook endpoint; the signing secret is sealed under a key derived from the master key.
CREATE TABLE webhook_endpoints (
    client_id     TEXT PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
    url           TEXT    NOT NULL,
    secret_sealed BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- Delivery bookkeeping: why the last attempt failed, and when retries were given up.
ALTER TABLE outbox ADD COLUMN last_error TEXT;
ALTER TABLE outbox ADD COLUMN given_up_at INTEGER;
