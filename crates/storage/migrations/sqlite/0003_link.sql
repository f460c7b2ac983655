-- Link sessions (issue 5). A row is created by POST /api/v1/linktoken and holds only digests of the
-- auth_code and of the browser session token; `used_at` makes the link token single use across instances.
CREATE TABLE link_sessions (
    id                         TEXT PRIMARY KEY,
    code_digest                BLOB    NOT NULL UNIQUE,
    client_id                  TEXT    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    user_id                    TEXT    NOT NULL,
    scope                      TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    integration_id             TEXT,
    restrict_multiple_accounts INTEGER NOT NULL,
    transfer_options           TEXT,
    created_at                 INTEGER NOT NULL,
    expires_at                 INTEGER NOT NULL,
    used_at                    INTEGER,
    session_digest             BLOB UNIQUE,
    session_expires_at         INTEGER
) STRICT;
CREATE INDEX link_sessions_by_expiry ON link_sessions (expires_at);

-- OAuth sign-ins started from a Link session, keyed by the digest of their `state`. The PKCE verifier is
-- kept only until the callback claims the row (it is useless without the single-use authorization code).
CREATE TABLE link_oauth (
    state_digest  BLOB PRIMARY KEY,
    session_id    TEXT    NOT NULL REFERENCES link_sessions (id) ON DELETE CASCADE,
    integration   TEXT    NOT NULL,
    pkce_verifier TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    claimed_at    INTEGER,
    completed_at  INTEGER,
    token_id      TEXT,
    error         TEXT
) STRICT;
CREATE INDEX link_oauth_by_session ON link_oauth (session_id);

-- Origins allowed to embed a client's Link pages (CSP frame-ancestors).
CREATE TABLE link_origins (
    client_id  TEXT    NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    origin     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, origin)
) STRICT;
