-- Client-managed tokens (issue 4): linkvault's own access and refresh tokens for clients in `client` token
-- mode. Only HMAC-SHA256 digests are stored. A family belongs to one connection and goes with it: every
-- table cascades from `connections`, so deleting a connection leaves no digest behind (and secure_delete
-- zeroes the freed pages).
CREATE TABLE client_token_families (
    family_id          TEXT PRIMARY KEY,
    token_id           TEXT    NOT NULL REFERENCES connections (token_id) ON DELETE CASCADE,
    client_id          TEXT    NOT NULL,
    integration        TEXT    NOT NULL,
    -- The current refresh token; a rotation replaces it with a compare-and-set on (refresh_digest, generation).
    refresh_digest     BLOB    NOT NULL UNIQUE,
    refresh_expires_at INTEGER,
    generation         INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    revoked_at         INTEGER,
    revoked_reason     TEXT CHECK (revoked_reason IN ('refreshTokenReused', 'superseded'))
) STRICT;
CREATE INDEX client_token_families_by_token ON client_token_families (token_id);

-- Access tokens of a family; several may be live at once (each refresh adds one, expired ones are purged).
CREATE TABLE client_access_tokens (
    digest     BLOB PRIMARY KEY,
    family_id  TEXT    NOT NULL REFERENCES client_token_families (family_id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX client_access_tokens_by_family ON client_access_tokens (family_id);

-- Refresh tokens rotated away from, kept so that presenting one again is recognised as reuse.
CREATE TABLE client_spent_refresh_tokens (
    digest    BLOB PRIMARY KEY,
    family_id TEXT    NOT NULL REFERENCES client_token_families (family_id) ON DELETE CASCADE,
    spent_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX client_spent_refresh_tokens_by_family ON client_spent_refresh_tokens (family_id);
