-- jobstack schema, version 4 (SQLite): fewer b-tree writes per lease and result
-- (`jobstack bench scheduler`: the writer thread's commit writes every page an
-- operation touched, and each lease and result is two events and a lease row).
--
-- - events loses AUTOINCREMENT: with it, every insert also read and rewrote
--   the table's row in sqlite_sequence. Events are never deleted, so a new id
--   is still one more than the last, as before.
-- - leases becomes WITHOUT ROWID: its primary key (part_id, attempt) was an
--   index beside the table, written with every lease and read by every result.
--   The rows are small; the key is now the table.

CREATE TABLE events_v4 (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    entity     TEXT    NOT NULL,
    entity_id  INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    detail     TEXT    NOT NULL
);
INSERT INTO events_v4 (id, at, entity, entity_id, kind, from_state, to_state, detail)
SELECT id, at, entity, entity_id, kind, from_state, to_state, detail FROM events;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
DELETE FROM sqlite_sequence WHERE name = 'events';

CREATE TABLE leases_v4 (
    part_id    INTEGER NOT NULL REFERENCES parts (id),
    attempt    INTEGER NOT NULL,
    agent      TEXT    NOT NULL,
    leased_at  INTEGER NOT NULL,
    ended_at   INTEGER,
    end_reason TEXT,
    PRIMARY KEY (part_id, attempt)
) WITHOUT ROWID;
INSERT INTO leases_v4 (part_id, attempt, agent, leased_at, ended_at, end_reason)
SELECT part_id, attempt, agent, leased_at, ended_at, end_reason FROM leases;
DROP TABLE leases;
ALTER TABLE leases_v4 RENAME TO leases;
