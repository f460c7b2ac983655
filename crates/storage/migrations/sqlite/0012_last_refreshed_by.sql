-- The refresh engine instance (its lease owner name) whose refresh wrote a connection's current credentials;
-- NULL when they came from outside the engine (import, re-authentication, client-managed refresh).
ALTER TABLE connections ADD COLUMN last_refreshed_by TEXT;
