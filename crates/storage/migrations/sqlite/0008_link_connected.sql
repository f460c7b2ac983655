-- Issue 13: the integration a Link session connected (its first successful sign-in), so that a session opened
-- with `restrictMultipleAccounts` refuses a sign-in to a different integration on the server, not only in the
-- page. Set once, by a conditional UPDATE, so two concurrent sign-ins cannot both win.
ALTER TABLE link_sessions ADD COLUMN connected_integration TEXT;
