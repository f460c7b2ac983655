CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE key_versions (
    version     INTEGER PRIMARY KEY,
    wrapped_key BYTEA   NOT NULL,
    is_current  BOOLEAN NOT NULL DEFAULT FALSE,
    wrap_count  BIGINT  NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX key_versions_one_current ON key_versions (is_current) WHERE is_current;

CREATE TABLE clients (
    client_id  UUID PRIMARY KEY,
    name       TEXT   NOT NULL,
    token_mode TEXT   NOT NULL CHECK (token_mode IN ('managed', 'client')),
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key_id        UUID PRIMARY KEY,
    client_id     UUID   NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope         TEXT   NOT NULL CHECK (scope IN ('read', 'write')),
    digest        BYTEA  NOT NULL UNIQUE,
    secret_prefix TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_by_client ON api_keys (client_id);

CREATE TABLE connections (
    token_id            UUID PRIMARY KEY,
    client_id           UUID    NOT NULL REFERENCES clients (client_id),
    user_id             TEXT    NOT NULL,
    integration         TEXT    NOT NULL,
    scope               TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    status              TEXT    NOT NULL,
    key_version         INTEGER NOT NULL REFERENCES key_versions (version),
    wrapped_data_key    BYTEA   NOT NULL,
    data_key_generation INTEGER NOT NULL,
    data_key_uses       BIGINT  NOT NULL,
    credentials         BYTEA   NOT NULL,
    account_id          TEXT,
    account_name        TEXT,
    access_expires_at   BIGINT,
    refresh_expires_at  BIGINT,
    last_refreshed_at   BIGINT,
    refresh_count       BIGINT  NOT NULL DEFAULT 0,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    version             BIGINT  NOT NULL,
    UNIQUE (client_id, user_id, integration, scope)
);
CREATE INDEX connections_by_key_version ON connections (key_version);

CREATE TABLE retired_tokens (
    token_id   UUID PRIMARY KEY,
    retired_at BIGINT NOT NULL
);
