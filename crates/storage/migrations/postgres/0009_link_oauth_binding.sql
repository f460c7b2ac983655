-- Binds a Link OAuth sign-in to the browser that started it (see the SQLite migration of the same number).
ALTER TABLE link_oauth ADD COLUMN begin_digest BYTEA;
ALTER TABLE link_oauth ADD COLUMN authorize_url TEXT;
ALTER TABLE link_oauth ADD COLUMN binding_digest BYTEA;
CREATE UNIQUE INDEX link_oauth_by_begin ON link_oauth (begin_digest);
