-- Settings such as the master-key fingerprint.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- Key-encryption-key versions, each sealed under the master key.
CREATE TABLE key_versions (
    version     INTEGER PRIMARY KEY,
    wrapped_key BLOB    NOT NULL,
    is_current  INTEGER NOT NULL DEFAULT 0,
    wrap_count  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX key_versions_one_current ON key_versions (is_current) WHERE is_current = 1;

CREATE TABLE clients (
    client_id  TEXT PRIMARY KEY,
    name       TEXT    NOT NULL,
    token_mode TEXT    NOT NULL CHECK (token_mode IN ('managed', 'client')),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY,
    client_id     TEXT    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope         TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    digest        BLOB    NOT NULL UNIQUE,
    secret_prefix TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
) STRICT;
CREATE INDEX api_keys_by_client ON api_keys (client_id);

CREATE TABLE connections (
    token_id            TEXT PRIMARY KEY,
    client_id           TEXT    NOT NULL REFERENCES clients (client_id),
    user_id             TEXT    NOT NULL,
    integration         TEXT    NOT NULL,
    scope               TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    status              TEXT    NOT NULL,
    key_version         INTEGER NOT NULL REFERENCES key_versions (version),
    wrapped_data_key    BLOB    NOT NULL,
    data_key_generation INTEGER NOT NULL,
    data_key_uses       INTEGER NOT NULL,
    credentials         BLOB    NOT NULL,
    account_id          TEXT,
    account_name        TEXT,
    access_expires_at   INTEGER,
    refresh_expires_at  INTEGER,
    last_refreshed_at   INTEGER,
    refresh_count       INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    version             INTEGER NOT NULL,
    UNIQUE (client_id, user_id, integration, scope)
) STRICT;
CREATE INDEX connections_by_key_version ON connections (key_version);

-- TokenIds of deleted connections: never issued again. Holds no secret.
CREATE TABLE retired_tokens (
    token_id   TEXT PRIMARY KEY,
    retired_at INTEGER NOT NULL
) STRICT;
