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
-- Parts churn like a queue: vacuum and analyze after 1% of them changed (not
-- the default 10-20%), so leased parts' dead index entries go away early.
ALTER TABLE parts SET (autovacuum_vacuum_scale_factor = 0.01,
                       autovacuum_analyze_scale_factor = 0.01);
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

-- The two hot paths as server-side functions: one round trip each. The policy
-- (leasing order and eligibility, the fencing verdict) is the scheduler's and
-- is written in the Rust code next to each call (store/postgres/leasing.rs and
-- results.rs); these functions only do the locking and the writes.

-- Lease the best waiting part the agent may take; no row when there is none.
-- Runs in its own transaction (one statement); each statement of the body sees
-- what committed before it (READ COMMITTED, volatile function).
-- SET: a queue's statistics are always stale, and with an estimate of a few
-- hundred waiting parts the planner prefers "fetch all waiting, sort, take one",
-- a full scan per lease once a million wait. Without sorts and bitmap scans the
-- only plan left walks parts_to_lease in order and stops at the first match.
CREATE FUNCTION jobstack_lease(p_now BIGINT, p_agent_id BIGINT, p_agent TEXT,
                               p_any_plugin BOOLEAN, p_plugins TEXT[])
RETURNS TABLE (id BIGINT, run_id BIGINT, attempt BIGINT, lease_expires_at BIGINT,
               label TEXT, targets TEXT, payload TEXT, task_id BIGINT, spec TEXT,
               secrets TEXT, plugin_sha256 TEXT)
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
    v_part BIGINT;
    v_run BIGINT;
    v_attempt BIGINT;
BEGIN
    -- A lease need not wait for the WAL flush: lost in a crash, the part is
    -- simply Waiting again and the lost attempt's result is refused. The next
    -- result's (synchronous) commit flushes it anyway.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- The agent's row lock queues the leases of one agent (one per slot), so
    -- the next one sees this one's part: one part per run per agent.
    UPDATE agents SET last_seen = p_now WHERE agents.id = p_agent_id;
    SELECT p.id, p.run_id INTO v_part, v_run
    FROM parts p JOIN runs r ON r.id = p.run_id
    WHERE p.state = 'waiting' AND p.available_at <= p_now
      AND (p.pinned_agent IS NULL OR p.pinned_agent = p_agent)
      AND (NOT r.explicit_agents
           OR EXISTS (SELECT 1 FROM run_agents ra
                      WHERE ra.run_id = p.run_id AND ra.agent_name = p_agent))
      AND (p_any_plugin OR r.plugin = ANY (p_plugins))
      AND (p.span_lo IS NULL OR r.explicit_agents
           OR EXISTS (SELECT 1 FROM agent_networks n
                      WHERE n.agent_id = p_agent_id AND n.lo <= p.span_lo AND p.span_hi <= n.hi))
      AND p.run_id NOT IN (SELECT q.run_id FROM parts q
                           WHERE q.state = 'running' AND q.owner = p_agent)
    ORDER BY p.rank, p.run_id, p.seq
    LIMIT 1
    FOR UPDATE OF p SKIP LOCKED;
    IF v_part IS NULL THEN
        RETURN;
    END IF;
    UPDATE parts p SET state = 'running', attempt = p.attempt + 1, owner = p_agent,
        lease_expires_at = p_now + r.lease_ttl_ms, progress_done = NULL, progress_total = NULL
    FROM runs r WHERE p.id = v_part AND r.id = v_run
    RETURNING p.attempt INTO v_attempt;
    INSERT INTO leases (part_id, attempt, agent, leased_at)
    VALUES (v_part, v_attempt, p_agent, p_now);
    INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
    VALUES (p_now, 'part', v_part, 'state', 'waiting', 'running',
            json_build_object('agent', p_agent, 'attempt', v_attempt)::TEXT);
    -- The run's first lease starts it (scheduler::run_state_from_parts).
    UPDATE runs SET state = 'running' WHERE runs.id = v_run AND runs.state = 'waiting';
    IF FOUND THEN
        INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
        VALUES (p_now, 'run', v_run, 'state', 'waiting', 'running', '{}');
    END IF;
    RETURN QUERY
    SELECT p.id, p.run_id, p.attempt, p.lease_expires_at, p.label, p.targets, p.payload,
           r.task_id, r.spec, r.secrets, r.plugin_sha256
    FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = v_part;
END
$$;

-- Record a result and apply the verdict the scheduler reached on the part as
-- it read it: a compare-and-set on (state, attempt, owner) under the part's row
-- lock. Answers the part's run and 'conflict' (the part is not as expected:
-- read it and judge again), 'duplicate' (this attempt's result is already
-- stored), 'recorded' (stored, no state change asked), 'changed' (the part
-- moved; the run cannot have ended: a part is still waiting) or 'refresh' (the
-- part moved and none is waiting: the caller derives the run's state under the
-- run's lock).
CREATE FUNCTION jobstack_submit(
    p_part BIGINT, p_attempt BIGINT, p_agent TEXT, p_agent_id BIGINT,
    p_now BIGINT, p_status TEXT, p_output TEXT, p_error TEXT, p_emitted TEXT, p_logs TEXT,
    p_started_at BIGINT, p_duration_ms BIGINT, p_applied BOOLEAN, p_end_reason TEXT,
    p_revoke_attempt BIGINT, p_expect_state TEXT, p_expect_attempt BIGINT,
    p_expect_owner TEXT, p_to TEXT, p_keep_owner BOOLEAN, p_owner TEXT,
    p_available_at BIGINT, p_part_error TEXT, p_detail TEXT)
RETURNS TABLE (outcome TEXT, run_id BIGINT)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_run BIGINT;
    v_state TEXT;
    v_attempt BIGINT;
    v_owner TEXT;
BEGIN
    SELECT p.run_id, p.state, p.attempt, p.owner INTO v_run, v_state, v_attempt, v_owner
    FROM parts p WHERE p.id = p_part FOR UPDATE;
    IF v_state IS DISTINCT FROM p_expect_state OR v_attempt IS DISTINCT FROM p_expect_attempt
       OR v_owner IS DISTINCT FROM p_expect_owner THEN
        RETURN QUERY SELECT 'conflict', v_run;
        RETURN;
    END IF;
    INSERT INTO results (part_id, attempt, run_id, agent, status, output, error, emitted, logs,
                         started_at, duration_ms, applied, received_at)
    VALUES (p_part, p_attempt, v_run, p_agent, p_status, p_output, p_error, p_emitted, p_logs,
            p_started_at, p_duration_ms, p_applied, p_now)
    ON CONFLICT (part_id, attempt) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'duplicate', v_run;
        RETURN;
    END IF;
    UPDATE leases SET ended_at = p_now,
        end_reason = CASE WHEN attempt = p_attempt THEN p_end_reason ELSE 'revoked' END
    WHERE part_id = p_part AND (attempt = p_attempt OR attempt = p_revoke_attempt)
      AND ended_at IS NULL;
    UPDATE agents SET last_seen = p_now WHERE id = p_agent_id AND last_seen < p_now - 1000;
    IF p_to IS NULL THEN
        RETURN QUERY SELECT 'recorded', v_run;
        RETURN;
    END IF;
    UPDATE parts SET state = p_to,
        owner = CASE WHEN p_keep_owner THEN owner ELSE p_owner END,
        lease_expires_at = NULL,
        available_at = COALESCE(p_available_at, available_at),
        error = COALESCE(p_part_error, error)
    WHERE id = p_part;
    INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
    VALUES (p_now, 'part', p_part, 'state', p_expect_state, p_to, p_detail);
    IF p_to = 'waiting' THEN
        PERFORM pg_notify('jobstack_work', '');
    END IF;
    IF EXISTS (SELECT 1 FROM parts p WHERE p.run_id = v_run AND p.state = 'waiting') THEN
        RETURN QUERY SELECT 'changed', v_run;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'refresh', v_run;
END
$$;
