-- What linkvault sent for each executed transfer, and the status follower's bookkeeping (see the SQLite
-- migration of the same number for the reasoning).
ALTER TABLE transfer_executions ADD COLUMN user_id TEXT;
ALTER TABLE transfer_executions ADD COLUMN integration TEXT;
ALTER TABLE transfer_executions ADD COLUMN symbol TEXT;
ALTER TABLE transfer_executions ADD COLUMN amount DOUBLE PRECISION;
ALTER TABLE transfer_executions ADD COLUMN amount_in_fiat DOUBLE PRECISION;
ALTER TABLE transfer_executions ADD COLUMN network_id UUID;
ALTER TABLE transfer_executions ADD COLUMN to_address TEXT;
ALTER TABLE transfer_executions ADD COLUMN transfer_status TEXT
    CHECK (transfer_status IN ('pending', 'succeeded', 'failed'));
ALTER TABLE transfer_executions ADD COLUMN hash TEXT;
ALTER TABLE transfer_executions ADD COLUMN announced_status TEXT
    CHECK (announced_status IN ('pending', 'succeeded', 'failed'));
ALTER TABLE transfer_executions ADD COLUMN next_check_at BIGINT;
ALTER TABLE transfer_executions ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transfer_executions ADD COLUMN follow_lease_until BIGINT;
ALTER TABLE transfer_executions ADD COLUMN follow_gave_up_at BIGINT;
CREATE INDEX transfer_executions_due ON transfer_executions (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX transfer_executions_listed ON transfer_executions (client_id, created_at);

ALTER TABLE webhook_endpoints ADD COLUMN format TEXT NOT NULL DEFAULT 'standard'
    CHECK (format IN ('standard', 'mesh'));
