CREATE TABLE webhook_endpoints (
    client_id     UUID PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
    url           TEXT   NOT NULL,
    secret_sealed BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

ALTER TABLE outbox ADD COLUMN last_error TEXT;
ALTER TABLE outbox ADD COLUMN given_up_at BIGINT;
