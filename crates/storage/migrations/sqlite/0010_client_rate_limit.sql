-- A client's own API rate limit in requests per minute (issue 14, finding 4); NULL = the server's
-- `serve --api-rate-limit`. Read with every API key lookup, so a change reaches every instance within the
-- key cache's second.
ALTER TABLE clients ADD COLUMN api_rate_limit INTEGER CHECK (api_rate_limit > 0);
