-- Data keys wrapped under each key version, counted in slots (issue 15): one counter row per version made every
-- insert of a connection wait for the previous one's commit, since each held that row's lock until then. A
-- writer adds to one slot (consecutive writes of a process take consecutive slots); the count of a version is
-- key_versions.wrap_count (what it had before this migration, or was created with) plus its slots.
CREATE TABLE key_version_wraps (
    version INTEGER NOT NULL REFERENCES key_versions (version) ON DELETE CASCADE,
    slot    INTEGER NOT NULL,
    wraps   BIGINT  NOT NULL,
    PRIMARY KEY (version, slot)
);
