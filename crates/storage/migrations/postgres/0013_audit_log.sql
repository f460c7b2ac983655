-- The tamper-evident audit log (issue 16): one row per sensitive action, chained by an HMAC over the previous
-- record's MAC, the position and the record (the key is derived from the master key; the store never sees it).
-- Subject ids are text so that an edited row still reads and `audit verify` can name it.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    client_id  TEXT,
    token_id   TEXT,
    subject_id TEXT,
    detail     TEXT,
    mac        BYTEA  NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

-- linkvault only ever inserts: this stops a bug (not an attacker, who can drop it) from editing the log.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- The chain's head: the last position and MAC, and a tag binding them, so that cutting records off the end is
-- seen too. Appends lock this row (PostgreSQL) or hold the single writer (SQLite), which keeps `seq` gapless.
CREATE TABLE audit_head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    mac BYTEA  NOT NULL,
    tag BYTEA
);
INSERT INTO audit_head (id, seq, mac, tag) VALUES (1, 0, '', NULL);
