-- The tamper-evident audit log (issue 16): one row per sensitive action, chained by an HMAC over the previous
-- record's MAC, the position and the record (the key is derived from the master key; the store never sees it).
-- Subject ids are text so that an edited row still reads and `audit verify` can name it.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    client_id  TEXT,
    token_id   TEXT,
    subject_id TEXT,
    detail     TEXT,
    mac        BLOB    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

-- linkvault only ever inserts: these stop a bug (not an attacker, who can drop them) from editing the log.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- The chain's head: the last position and MAC, and a tag binding them, so that cutting records off the end is
-- seen too. Appends lock this row (PostgreSQL) or hold the single writer (SQLite), which keeps `seq` gapless.
CREATE TABLE audit_head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    mac BLOB    NOT NULL,
    tag BLOB
);
INSERT INTO audit_head (id, seq, mac, tag) VALUES (1, 0, X'', NULL);
