-- jobstack schema (SQLite).
-- Times are milliseconds since the Unix epoch (UTC). JSON is stored as text.
-- Address spans are 32-digit lowercase hex (IPv4 as IPv4-mapped IPv6), so that
-- text comparison orders them like numbers (see scheduler::targeting).
-- Every write goes through the store's writer (store/sqlite/writer).

CREATE TABLE plugins (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256      TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    manifest    TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    uploaded_at INTEGER NOT NULL
);

CREATE INDEX plugins_by_name ON plugins (name, id);

-- The bytes of every uploaded plugin module (the data directory's module
-- directory is a cache of it).
CREATE TABLE modules (
    sha256 TEXT PRIMARY KEY,
    bytes  BLOB NOT NULL
);

CREATE TABLE agents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL UNIQUE,
    token_hash      TEXT    NOT NULL,
    networks        TEXT    NOT NULL,
    plugins         TEXT    NOT NULL,
    pooled_slots    INTEGER NOT NULL,
    dedicated_slots INTEGER NOT NULL,
    registered_at   INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL
);

CREATE UNIQUE INDEX agents_by_token ON agents (token_hash);

-- An agent's networks as address spans, for automatic targeting.
CREATE TABLE agent_networks (
    agent_id INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    lo       TEXT    NOT NULL,
    hi       TEXT    NOT NULL
);

CREATE INDEX agent_networks_by_agent ON agent_networks (agent_id);

CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    spec        TEXT    NOT NULL,
    secrets     TEXT    NOT NULL,
    next_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE INDEX tasks_due ON tasks (next_run_at) WHERE next_run_at IS NOT NULL;

-- A run snapshots its task (spec, secrets) and plugin module; the columns after
-- `ended_at` are derived from the snapshot for the leasing query, and the part
-- counters are kept in step with every part transition.
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id         INTEGER NOT NULL REFERENCES tasks (id),
    spec            TEXT    NOT NULL,
    secrets         TEXT    NOT NULL,
    plugin_sha256   TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    cause           TEXT    NOT NULL,
    rerun_of        INTEGER REFERENCES runs (id),
    error           TEXT,
    created_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    plugin          TEXT    NOT NULL,
    rank            INTEGER NOT NULL,
    lease_ttl_ms    INTEGER NOT NULL,
    retries         INTEGER NOT NULL,
    explicit_agents INTEGER NOT NULL,
    n_waiting       INTEGER NOT NULL DEFAULT 0,
    n_running       INTEGER NOT NULL DEFAULT 0,
    n_suspended     INTEGER NOT NULL DEFAULT 0,
    n_finished      INTEGER NOT NULL DEFAULT 0,
    n_failed        INTEGER NOT NULL DEFAULT 0,
    n_canceled      INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX runs_by_task ON runs (task_id, id);
CREATE INDEX runs_by_state ON runs (state);
-- Leasing walks the runs an agent may take from first, in leasing order
-- (rank: forced, priority; then oldest run).
CREATE INDEX runs_to_lease ON runs (rank, id) WHERE state IN ('waiting', 'running');

-- The agents a run targets by name (none: automatic targeting).
CREATE TABLE run_agents (
    run_id     INTEGER NOT NULL REFERENCES runs (id),
    agent_name TEXT    NOT NULL,
    PRIMARY KEY (run_id, agent_name)
);

CREATE TABLE parts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id           INTEGER NOT NULL REFERENCES runs (id),
    seq              INTEGER NOT NULL,
    label            TEXT    NOT NULL,
    targets          TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    span_lo          TEXT,
    span_hi          TEXT,
    pinned_agent     TEXT,
    state            TEXT    NOT NULL,
    rank             INTEGER NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    owner            TEXT,
    lease_expires_at INTEGER,
    available_at     INTEGER NOT NULL,
    progress_done    INTEGER,
    progress_total   INTEGER,
    error            TEXT
);

-- The leasing order within a run: rank, run, split order.
CREATE INDEX parts_to_lease ON parts (rank, run_id, seq) WHERE state = 'waiting';
CREATE INDEX parts_expiring ON parts (lease_expires_at) WHERE state = 'running';
CREATE INDEX parts_by_owner ON parts (owner, run_id) WHERE state = 'running';
CREATE INDEX parts_by_run ON parts (run_id, seq);

-- Every lease ever given: who held which attempt (the fence for results).
-- WITHOUT ROWID: the key is the table, one b-tree written per lease.
CREATE TABLE leases (
    part_id    INTEGER NOT NULL REFERENCES parts (id),
    attempt    INTEGER NOT NULL,
    agent      TEXT    NOT NULL,
    leased_at  INTEGER NOT NULL,
    ended_at   INTEGER,
    end_reason TEXT,
    PRIMARY KEY (part_id, attempt)
) WITHOUT ROWID;

CREATE TABLE results (
    part_id     INTEGER NOT NULL REFERENCES parts (id),
    attempt     INTEGER NOT NULL,
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    agent       TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    output      TEXT,
    error       TEXT,
    emitted     TEXT    NOT NULL,
    logs        TEXT    NOT NULL,
    started_at  INTEGER,
    duration_ms INTEGER NOT NULL,
    applied     INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (part_id, attempt)
);

CREATE INDEX results_by_run ON results (run_id, part_id, attempt);

-- The event log. No AUTOINCREMENT: events are never deleted, so a new id is
-- one more than the last without a write to sqlite_sequence per event.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    entity     TEXT    NOT NULL,
    entity_id  INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    detail     TEXT    NOT NULL
);
