-- jobstack schema (PostgreSQL): the tables and indexes. The same model as the
-- SQLite schema of the same name. The functions (and the trigger) are in
-- functions/, one file each, applied after the migrations at every open.
-- Times are milliseconds since the Unix epoch (UTC). JSON is stored as text.
-- Address spans are 32-digit lowercase hex compared bytewise (COLLATE "C"), so
-- that text comparison orders them like numbers (see scheduler::targeting).

CREATE TABLE plugins (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256      TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    manifest    TEXT    NOT NULL,
    size        BIGINT  NOT NULL,
    uploaded_at BIGINT  NOT NULL
);
CREATE INDEX plugins_by_name ON plugins (name, id);

-- The bytes of every uploaded module, so that any daemon on the database can
-- serve it and split runs with it; a daemon's module directory caches them.
CREATE TABLE modules (
    sha256 TEXT  PRIMARY KEY,
    bytes  BYTEA NOT NULL
);

CREATE TABLE agents (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    token_hash      TEXT    NOT NULL,
    networks        TEXT    NOT NULL,
    plugins         TEXT    NOT NULL,
    pooled_slots    BIGINT  NOT NULL,
    dedicated_slots BIGINT  NOT NULL,
    registered_at   BIGINT  NOT NULL,
    last_seen       BIGINT  NOT NULL
);
CREATE UNIQUE INDEX agents_by_token ON agents (token_hash);

CREATE TABLE agent_networks (
    agent_id BIGINT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    lo       TEXT COLLATE "C" NOT NULL,
    hi       TEXT COLLATE "C" NOT NULL
);
CREATE INDEX agent_networks_by_agent ON agent_networks (agent_id);

CREATE TABLE tasks (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    spec        TEXT    NOT NULL,
    secrets     TEXT    NOT NULL,
    next_run_at BIGINT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX tasks_due ON tasks (next_run_at) WHERE next_run_at IS NOT NULL;

-- A run snapshots its task (spec, secrets) and plugin module; the columns after
-- `ended_at` are derived from the snapshot for leasing. No part counters: they
-- would queue every agent of a run on the run's row lock; counts are read from
-- `parts` (parts_by_run_state).
CREATE TABLE runs (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id         BIGINT  NOT NULL REFERENCES tasks (id),
    spec            TEXT    NOT NULL,
    secrets         TEXT    NOT NULL,
    plugin_sha256   TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    cause           TEXT    NOT NULL,
    rerun_of        BIGINT  REFERENCES runs (id),
    error           TEXT,
    created_at      BIGINT  NOT NULL,
    ended_at        BIGINT,
    plugin          TEXT    NOT NULL,
    rank            BIGINT  NOT NULL,
    lease_ttl_ms    BIGINT  NOT NULL,
    retries         BIGINT  NOT NULL,
    explicit_agents BOOLEAN NOT NULL
);
CREATE INDEX runs_by_task ON runs (task_id, id);
CREATE INDEX runs_by_state ON runs (state);
-- Leases walk the open runs first, in leasing order (rank, oldest).
CREATE INDEX runs_to_lease ON runs (rank, id) WHERE state IN ('waiting', 'running');

CREATE TABLE run_agents (
    run_id     BIGINT NOT NULL REFERENCES runs (id),
    agent_name TEXT   NOT NULL,
    PRIMARY KEY (run_id, agent_name)
);

CREATE TABLE parts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id           BIGINT  NOT NULL REFERENCES runs (id),
    seq              BIGINT  NOT NULL,
    label            TEXT    NOT NULL,
    targets          TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    span_lo          TEXT COLLATE "C",
    span_hi          TEXT COLLATE "C",
    pinned_agent     TEXT,
    state            TEXT    NOT NULL,
    rank             BIGINT  NOT NULL,
    attempt          BIGINT  NOT NULL DEFAULT 0,
    owner            TEXT,
    lease_expires_at BIGINT,
    available_at     BIGINT  NOT NULL,
    progress_done    BIGINT,
    progress_total   BIGINT,
    error            TEXT
);
-- Parts churn like a queue: vacuum and analyze after 1% of them changed, so
-- leased parts' dead index entries go early.
ALTER TABLE parts SET (autovacuum_vacuum_scale_factor = 0.01,
                       autovacuum_analyze_scale_factor = 0.01);
-- The leasing order: rank (forced, priority), oldest run, split order.
CREATE INDEX parts_to_lease ON parts (rank, run_id, seq) WHERE state = 'waiting';
-- Running parts by agent (one part per run per agent) with their expiry, which
-- the expiry sweep reads whole: running parts are a few per agent.
CREATE INDEX parts_by_owner ON parts (owner, run_id, lease_expires_at) WHERE state = 'running';
-- Counts per state and "is anything still open" for a run's state.
CREATE INDEX parts_by_run_state ON parts (run_id, state);

-- Per run, "no part with a lower seq is waiting": a lease's walk of
-- parts_to_lease starts there, past the entries of leased parts that vacuum
-- has not removed yet. A run without a row has mark 0.
CREATE TABLE lease_marks (
    run_id BIGINT PRIMARY KEY,
    seq    BIGINT NOT NULL
);

-- Every lease ever given: who held which attempt (the fence for results).
-- No foreign key to parts: only the functions write leases, for a part they
-- have just changed, and parts are never deleted; a check would lock it again.
CREATE TABLE leases (
    part_id    BIGINT NOT NULL,
    attempt    BIGINT NOT NULL,
    agent      TEXT   NOT NULL,
    leased_at  BIGINT NOT NULL,
    ended_at   BIGINT,
    end_reason TEXT,
    PRIMARY KEY (part_id, attempt)
);

-- Keyed by run first, so that one index serves both the fence (part, attempt)
-- and a run's results. No foreign keys, as for leases: `run_id` is copied from
-- the part, and checking it would share-lock the run's row with every result.
CREATE TABLE results (
    part_id     BIGINT  NOT NULL,
    attempt     BIGINT  NOT NULL,
    run_id      BIGINT  NOT NULL,
    agent       TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    output      TEXT,
    error       TEXT,
    emitted     TEXT    NOT NULL,
    logs        TEXT    NOT NULL,
    started_at  BIGINT,
    duration_ms BIGINT  NOT NULL,
    applied     BOOLEAN NOT NULL,
    received_at BIGINT  NOT NULL,
    PRIMARY KEY (run_id, part_id, attempt)
);

CREATE TABLE events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT  NOT NULL,
    entity     TEXT    NOT NULL,
    entity_id  BIGINT  NOT NULL,
    kind       TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    detail     TEXT    NOT NULL
);
