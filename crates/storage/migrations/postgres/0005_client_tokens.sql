-- Client-managed tokens (issue 4): linkvault's own access and refresh tokens for clients in `client` token
-- mode. Only HMAC-SHA256 digests are stored. A family belongs to one connection and goes with it: every
-- table cascades from `connections`, so deleting a connection leaves no digest behind (dead tuples until
-- vacuum, as for `connections`).
CREATE TABLE client_token_families (
    family_id          UUID PRIMARY KEY,
    token_id           UUID    NOT NULL REFERENCES connections (token_id) ON DELETE CASCADE,
    client_id          UUID    NOT NULL,
    integration        TEXT    NOT NULL,
    -- The current refresh token; a rotation replaces it with a compare-and-set on (refresh_digest, generation).
    refresh_digest     BYTEA   NOT NULL UNIQUE,
    refresh_expires_at BIGINT,
    generation         BIGINT  NOT NULL,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    revoked_at         BIGINT,
    revoked_reason     TEXT CHECK (revoked_reason IN ('refreshTokenReused', 'superseded'))
);
CREATE INDEX client_token_families_by_token ON client_token_families (token_id);

-- Access tokens of a family; several may be live at once (each refresh adds one, expired ones are purged).
CREATE TABLE client_access_tokens (
    digest     BYTEA PRIMARY KEY,
    family_id  UUID    NOT NULL REFERENCES client_token_families (family_id) ON DELETE CASCADE,
    expires_at BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX client_access_tokens_by_family ON client_access_tokens (family_id);

-- Refresh tokens rotated away from, kept so that presenting one again is recognised as reuse.
CREATE TABLE client_spent_refresh_tokens (
    digest    BYTEA PRIMARY KEY,
    family_id UUID    NOT NULL REFERENCES client_token_families (family_id) ON DELETE CASCADE,
    spent_at  BIGINT  NOT NULL
);
CREATE INDEX client_spent_refresh_tokens_by_family ON client_spent_refresh_tokens (family_id);
