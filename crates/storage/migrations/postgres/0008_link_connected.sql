-- The integration a Link session connected (see the SQLite migration of the same number for the reasoning).
ALTER TABLE link_sessions ADD COLUMN connected_integration TEXT;
