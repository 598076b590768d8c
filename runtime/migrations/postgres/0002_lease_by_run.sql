-- jobstack schema, version 2 (PostgreSQL): the two hot functions of 0001
-- rewritten after measuring them (`jobstack bench scheduler`).
-- - jobstack_lease walked parts_to_lease part by part past every part of a run
--   the agent already held one of (one part per run per agent): an agent with
--   several slots on a run of a million parts scanned them all on each lease.
--   It now walks the runs first (index runs_to_lease), then the first part of
--   each it may take.
-- - jobstack_submit's "is a part still waiting" probe was planned as a scan of
--   the run's parts from the start, where the finished ones are; it now probes
--   the end of the run's range of parts_to_lease.
-- - Both turn JIT off: sorting disabled made the planner's costs huge enough to
--   JIT-compile these single-row statements (200 ms per call).

-- - parts_by_run goes: it offered the planner a second way to read a run's
--   parts in split order, through every finished part (listing a run's parts
--   now sorts what parts_by_run_state finds), and cost an index entry per
--   part update.

CREATE INDEX runs_to_lease ON runs (rank, id) WHERE state IN ('waiting', 'running');
DROP INDEX parts_by_run;

CREATE OR REPLACE FUNCTION jobstack_lease(p_now BIGINT, p_agent_id BIGINT, p_agent TEXT,
                               p_any_plugin BOOLEAN, p_plugins TEXT[])
RETURNS TABLE (id BIGINT, run_id BIGINT, attempt BIGINT, lease_expires_at BIGINT,
               label TEXT, targets TEXT, payload TEXT, task_id BIGINT, spec TEXT,
               secrets TEXT, plugin_sha256 TEXT)
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_run RECORD;
    v_part BIGINT;
    v_attempt BIGINT;
BEGIN
    -- A lease need not wait for the WAL flush (see 0001).
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Queue the leases of one agent (one per slot), so the next one sees this
    -- one's part: one part per run per agent. An advisory lock, not the
    -- agent's row: updating the row on every lease wrote a row version each.
    PERFORM pg_advisory_xact_lock(27251, (p_agent_id % 2147483647)::INT);
    UPDATE agents SET last_seen = p_now WHERE agents.id = p_agent_id AND last_seen < p_now - 1000;
    -- The runs this agent may take from, in leasing order (rank: forced,
    -- priority; then oldest), then the first part of each it may take. Runs
    -- are few; walking them first means a run the agent already holds a part
    -- of is skipped whole, not part by part.
    FOR v_run IN
        SELECT r.id, r.rank, r.explicit_agents FROM runs r
        WHERE r.state IN ('waiting', 'running')
          AND (p_any_plugin OR r.plugin = ANY (p_plugins))
          AND (NOT r.explicit_agents
               OR EXISTS (SELECT 1 FROM run_agents ra
                          WHERE ra.run_id = r.id AND ra.agent_name = p_agent))
          AND r.id NOT IN (SELECT q.run_id FROM parts q
                           WHERE q.state = 'running' AND q.owner = p_agent)
        ORDER BY r.rank, r.id
    LOOP
        SELECT p.id INTO v_part
        FROM parts p
        WHERE p.rank = v_run.rank AND p.run_id = v_run.id AND p.state = 'waiting'
          AND p.available_at <= p_now
          AND (p.pinned_agent IS NULL OR p.pinned_agent = p_agent)
          AND (p.span_lo IS NULL OR v_run.explicit_agents
               OR EXISTS (SELECT 1 FROM agent_networks n
                          WHERE n.agent_id = p_agent_id AND n.lo <= p.span_lo AND p.span_hi <= n.hi))
        ORDER BY p.rank, p.run_id, p.seq
        LIMIT 1
        FOR UPDATE OF p SKIP LOCKED;
        EXIT WHEN v_part IS NOT NULL;
    END LOOP;
    IF v_part IS NULL THEN
        RETURN;
    END IF;
    UPDATE parts p SET state = 'running', attempt = p.attempt + 1, owner = p_agent,
        lease_expires_at = p_now + r.lease_ttl_ms, progress_done = NULL, progress_total = NULL
    FROM runs r WHERE p.id = v_part AND r.id = v_run.id
    RETURNING p.attempt INTO v_attempt;
    INSERT INTO leases (part_id, attempt, agent, leased_at)
    VALUES (v_part, v_attempt, p_agent, p_now);
    INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
    VALUES (p_now, 'part', v_part, 'state', 'waiting', 'running',
            json_build_object('agent', p_agent, 'attempt', v_attempt)::TEXT);
    -- The run's first lease starts it (scheduler::run_state_from_parts).
    UPDATE runs SET state = 'running' WHERE runs.id = v_run.id AND runs.state = 'waiting';
    IF FOUND THEN
        INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
        VALUES (p_now, 'run', v_run.id, 'state', 'waiting', 'running', '{}');
    END IF;
    RETURN QUERY
    SELECT p.id, p.run_id, p.attempt, p.lease_expires_at, p.label, p.targets, p.payload,
           r.task_id, r.spec, r.secrets, r.plugin_sha256
    FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = v_part;
END
$$;

CREATE OR REPLACE FUNCTION jobstack_submit(
    p_part BIGINT, p_attempt BIGINT, p_agent TEXT, p_agent_id BIGINT,
    p_now BIGINT, p_status TEXT, p_output TEXT, p_error TEXT, p_emitted TEXT, p_logs TEXT,
    p_started_at BIGINT, p_duration_ms BIGINT, p_applied BOOLEAN, p_end_reason TEXT,
    p_revoke_attempt BIGINT, p_expect_state TEXT, p_expect_attempt BIGINT,
    p_expect_owner TEXT, p_to TEXT, p_keep_owner BOOLEAN, p_owner TEXT,
    p_available_at BIGINT, p_part_error TEXT, p_detail TEXT)
RETURNS TABLE (outcome TEXT, run_id BIGINT)
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_run BIGINT;
    v_rank BIGINT;
BEGIN
    -- The compare-and-set first: the update that applies the verdict is also
    -- the check (and the row lock), in one statement.
    IF p_to IS NULL THEN
        -- Recorded without a state change: lock the part to compare.
        SELECT p.run_id, p.rank INTO v_run, v_rank FROM parts p
        WHERE p.id = p_part AND p.state = p_expect_state AND p.attempt = p_expect_attempt
          AND p.owner IS NOT DISTINCT FROM p_expect_owner
        FOR UPDATE;
    ELSE
        UPDATE parts p SET state = p_to,
            owner = CASE WHEN p_keep_owner THEN p.owner ELSE p_owner END,
            lease_expires_at = NULL,
            available_at = COALESCE(p_available_at, p.available_at),
            error = COALESCE(p_part_error, p.error)
        WHERE p.id = p_part AND p.state = p_expect_state AND p.attempt = p_expect_attempt
          AND p.owner IS NOT DISTINCT FROM p_expect_owner
        RETURNING p.run_id, p.rank INTO v_run, v_rank;
    END IF;
    IF v_run IS NULL THEN
        RETURN QUERY SELECT 'conflict', (SELECT p.run_id FROM parts p WHERE p.id = p_part);
        RETURN;
    END IF;
    INSERT INTO results (part_id, attempt, run_id, agent, status, output, error, emitted, logs,
                         started_at, duration_ms, applied, received_at)
    VALUES (p_part, p_attempt, v_run, p_agent, p_status, p_output, p_error, p_emitted, p_logs,
            p_started_at, p_duration_ms, p_applied, p_now)
    ON CONFLICT (part_id, attempt) DO NOTHING;
    IF NOT FOUND THEN
        -- This attempt's result is already stored, and the part was changed
        -- above: undo it all (the caller answers "duplicate").
        RAISE EXCEPTION 'result of part % attempt % already recorded', p_part, p_attempt
            USING ERRCODE = 'JS001';
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
    INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
    VALUES (p_now, 'part', p_part, 'state', p_expect_state, p_to, p_detail);
    IF p_to = 'waiting' THEN
        PERFORM pg_notify('jobstack_work', '');
    END IF;
    -- Is any part of the run still waiting? Parts are leased in split order,
    -- so the waiting ones are at the end of the run's range of parts_to_lease;
    -- its start holds the entries of leased parts until vacuum removes them.
    PERFORM 1 FROM parts p
    WHERE p.rank = v_rank AND p.run_id = v_run AND p.state = 'waiting'
    ORDER BY p.rank DESC, p.run_id DESC, p.seq DESC
    LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT 'changed', v_run;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'refresh', v_run;
END
$$;
