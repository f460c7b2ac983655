-- Managed transfers. A preview is what the client agreed to (the details as JSON text) and expires; an
-- execution is the claim, taken before the integration is called, that makes a retried or concurrent execute
-- find the first one instead of transferring again. The unique indexes extend that to the client's
-- transactionId and Idempotency-Key: each names at most one execution per client.
CREATE TABLE transfer_previews (
    preview_id            TEXT PRIMARY KEY,
    client_id             TEXT    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    token_id              TEXT    NOT NULL,
    integration           TEXT    NOT NULL,
    client_transaction_id TEXT,
    details               TEXT    NOT NULL,
    created_at            INTEGER NOT NULL,
    expires_at            INTEGER NOT NULL
) STRICT;
CREATE INDEX transfer_previews_expires ON transfer_previews (expires_at);

-- No foreign key to the preview: executions are the record of what was sent and outlive purged previews.
CREATE TABLE transfer_executions (
    preview_id            TEXT PRIMARY KEY,
    client_id             TEXT    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    token_id              TEXT    NOT NULL,
    client_transaction_id TEXT,
    idempotency_key       TEXT,
    fingerprint           TEXT    NOT NULL,
    state                 TEXT    NOT NULL CHECK (state IN ('pending', 'succeeded')),
    attempt               INTEGER NOT NULL,
    lease_until           INTEGER NOT NULL,
    result                TEXT,
    transfer_id           TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX transfer_executions_transaction_id
    ON transfer_executions (client_id, client_transaction_id) WHERE client_transaction_id IS NOT NULL;
CREATE UNIQUE INDEX transfer_executions_idempotency_key
    ON transfer_executions (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
