-- Binds a Link OAuth sign-in to the browser that started it (issue 14). The page opens
-- `/link/oauth/begin?nonce=…` in its popup; that single-use step (found by the nonce's digest) sets a cookie in
-- that browser, stores the cookie value's digest here and redirects to `authorize_url`, which is then cleared.
-- The callback finishes the sign-in only for the browser presenting a cookie with that digest.
ALTER TABLE link_oauth ADD COLUMN begin_digest BLOB;
ALTER TABLE link_oauth ADD COLUMN authorize_url TEXT;
ALTER TABLE link_oauth ADD COLUMN binding_digest BLOB;
CREATE UNIQUE INDEX link_oauth_by_begin ON link_oauth (begin_digest);
