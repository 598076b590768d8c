-- jobstack schema, version 1 (PostgreSQL). The same model as the SQLite schema
-- of the same name, with two differences made for several daemons at once:
-- - runs carry no part counters: every part transition would update the run's
--   row and serialize all agents of a run on its lock (held across the commit's
--   flush). Counts are read from `parts` (index parts_by_run_state) instead;
-- - leasing and expiry lock part rows with FOR UPDATE SKIP LOCKED, so daemons
--   never wait for each other's parts.
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
-- `ended_at` are derived from the snapshot for the leasing query.
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
-- The leasing order: rank (forced, priority), oldest run, split order.
CREATE INDEX parts_to_lease ON parts (rank, run_id, seq) WHERE state = 'waiting';
CREATE INDEX parts_expiring ON parts (lease_expires_at) WHERE state = 'running';
CREATE INDEX parts_by_owner ON parts (owner, run_id) WHERE state = 'running';
CREATE INDEX parts_by_run ON parts (run_id, seq);
-- Counts per state and "is anything still open" for a run's state.
CREATE INDEX parts_by_run_state ON parts (run_id, state);

-- Every lease ever given: who held which attempt (the fence for results).
CREATE TABLE leases (
    part_id    BIGINT NOT NULL REFERENCES parts (id),
    attempt    BIGINT NOT NULL,
    agent      TEXT   NOT NULL,
    leased_at  BIGINT NOT NULL,
    ended_at   BIGINT,
    end_reason TEXT,
    PRIMARY KEY (part_id, attempt)
);

-- `run_id` is copied from the part and has no foreign key: checking one would
-- take a KEY SHARE lock on the run's row with every result, a lock all agents
-- of a run would share (multixacts) on the hottest path.
CREATE TABLE results (
    part_id     BIGINT  NOT NULL REFERENCES parts (id),
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
    PRIMARY KEY (part_id, attempt)
);
CREATE INDEX results_by_run ON results (run_id, part_id, attempt);

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
