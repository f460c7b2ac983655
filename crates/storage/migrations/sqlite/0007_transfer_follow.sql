-- What linkvault sent for each executed transfer (for GET /api/v1/transfers/managed/mesh and the webhooks),
-- where it stands at the provider, and the status follower's bookkeeping. Rows written before this migration
-- have no facts (NULL) and are not followed.
ALTER TABLE transfer_executions ADD COLUMN user_id TEXT;
ALTER TABLE transfer_executions ADD COLUMN integration TEXT;
ALTER TABLE transfer_executions ADD COLUMN symbol TEXT;
ALTER TABLE transfer_executions ADD COLUMN amount REAL;
ALTER TABLE transfer_executions ADD COLUMN amount_in_fiat REAL;
ALTER TABLE transfer_executions ADD COLUMN network_id TEXT;
ALTER TABLE transfer_executions ADD COLUMN to_address TEXT;
-- Mesh's transfer status at the provider, once sent; `announced_status` is the last one a webhook announced.
ALTER TABLE transfer_executions ADD COLUMN transfer_status TEXT
    CHECK (transfer_status IN ('pending', 'succeeded', 'failed'));
ALTER TABLE transfer_executions ADD COLUMN hash TEXT;
ALTER TABLE transfer_executions ADD COLUMN announced_status TEXT
    CHECK (announced_status IN ('pending', 'succeeded', 'failed'));
-- The follower: due at `next_check_at` (NULL: nothing to do), `checks` made so far (also its fencing number),
-- leased to one instance until `follow_lease_until`, given up on at `follow_gave_up_at`.
ALTER TABLE transfer_executions ADD COLUMN next_check_at INTEGER;
ALTER TABLE transfer_executions ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transfer_executions ADD COLUMN follow_lease_until INTEGER;
ALTER TABLE transfer_executions ADD COLUMN follow_gave_up_at INTEGER;
CREATE INDEX transfer_executions_due ON transfer_executions (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX transfer_executions_listed ON transfer_executions (client_id, created_at);

-- How a client's webhooks are shaped and signed: Standard Webhooks, or Mesh's transfer webhooks.
ALTER TABLE webhook_endpoints ADD COLUMN format TEXT NOT NULL DEFAULT 'standard'
    CHECK (format IN ('standard', 'mesh'));
