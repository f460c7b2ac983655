-- Link sessions (issue 5). A row is created by POST /api/v1/linktoken and holds only digests of the
-- auth_code and of the browser session token; `used_at` makes the link token single use across instances.
CREATE TABLE link_sessions (
    id                         UUID PRIMARY KEY,
    code_digest                BYTEA   NOT NULL UNIQUE,
    client_id                  UUID    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    user_id                    TEXT    NOT NULL,
    scope                      TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    integration_id             UUID,
    restrict_multiple_accounts BOOLEAN NOT NULL,
    transfer_options           TEXT,
    created_at                 BIGINT  NOT NULL,
    expires_at                 BIGINT  NOT NULL,
    used_at                    BIGINT,
    session_digest             BYTEA UNIQUE,
    session_expires_at         BIGINT
);
CREATE INDEX link_sessions_by_expiry ON link_sessions (expires_at);

-- OAuth sign-ins started from a Link session, keyed by the digest of their `state`. The PKCE verifier is
-- kept only until the callback claims the row (it is useless without the single-use authorization code).
CREATE TABLE link_oauth (
    state_digest  BYTEA PRIMARY KEY,
    session_id    UUID   NOT NULL REFERENCES link_sessions (id) ON DELETE CASCADE,
    integration   TEXT   NOT NULL,
    pkce_verifier TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    claimed_at    BIGINT,
    completed_at  BIGINT,
    token_id      UUID,
    error         TEXT
);
CREATE INDEX link_oauth_by_session ON link_oauth (session_id);

-- Origins allowed to embed a client's Link pages (CSP frame-ancestors).
CREATE TABLE link_origins (
    client_id  UUID   NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    origin     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, origin)
);
