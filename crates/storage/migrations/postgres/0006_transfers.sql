-- Managed transfers (see the SQLite migration of the same number for the reasoning).
CREATE TABLE transfer_previews (
    preview_id            UUID PRIMARY KEY,
    client_id             UUID   NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    token_id              UUID   NOT NULL,
    integration           TEXT   NOT NULL,
    client_transaction_id TEXT,
    details               TEXT   NOT NULL,
    created_at            BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL
);
CREATE INDEX transfer_previews_expires ON transfer_previews (expires_at);

CREATE TABLE transfer_executions (
    preview_id            UUID PRIMARY KEY,
    client_id             UUID    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    token_id              UUID    NOT NULL,
    client_transaction_id TEXT,
    idempotency_key       TEXT,
    fingerprint           TEXT    NOT NULL,
    state                 TEXT    NOT NULL CHECK (state IN ('pending', 'succeeded')),
    attempt               INTEGER NOT NULL,
    lease_until           BIGINT  NOT NULL,
    result                TEXT,
    transfer_id           TEXT,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL
);
CREATE UNIQUE INDEX transfer_executions_transaction_id
    ON transfer_executions (client_id, client_transaction_id) WHERE client_transaction_id IS NOT NULL;
CREATE UNIQUE INDEX transfer_executions_idempotency_key
    ON transfer_executions (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
