-- jobstack schema, version 4 (PostgreSQL): a result and the agent's next lease
-- in one call, one round trip and one transaction (`Store::submit_and_lease`;
-- they were two of each). Measured with `jobstack bench scheduler`.
--
-- - jobstack_lease_in is jobstack_lease (0002) without its setting and the
--   agent's "last seen": a lease alone commits without waiting for the WAL
--   flush, but a lease that shares its transaction with a result must wait
--   for it like the result; and the result marks the agent seen already. It
--   also runs fewer statements (`perf` on the server: the executor's set-up
--   of each statement is most of the time): what the lease hands out comes
--   from the part's update, not a second read, and the run is started only
--   if it is waiting.
-- - jobstack_lease is now that setting, "last seen", and jobstack_lease_in.
-- - The hot functions use generic plans: with `enable_sort` off, PostgreSQL
--   kept planning their statements anew on every call (custom plans).
-- - jobstack_submit_and_lease is jobstack_submit (0002) then, if the result
--   was stored, jobstack_lease_in. Its first columns are jobstack_submit's;
--   the lease's columns are NULL when no part was leased. An error in either
--   undoes both; the caller then sends the result alone, then leases.

CREATE FUNCTION jobstack_lease_in(p_now BIGINT, p_agent_id BIGINT, p_agent TEXT,
                               p_any_plugin BOOLEAN, p_plugins TEXT[])
RETURNS TABLE (id BIGINT, run_id BIGINT, attempt BIGINT, lease_expires_at BIGINT,
               label TEXT, targets TEXT, payload TEXT, task_id BIGINT, spec TEXT,
               secrets TEXT, plugin_sha256 TEXT)
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_run RECORD;
    v_part BIGINT;
    v_lease RECORD;
BEGIN
    -- Queue the leases of one agent (one per slot), so the next one sees this
    -- one's part: one part per run per agent. An advisory lock, not the
    -- agent's row: updating the row on every lease wrote a row version each.
    PERFORM pg_advisory_xact_lock(27251, (p_agent_id % 2147483647)::INT);
    -- The runs this agent may take from, in leasing order (rank: forced,
    -- priority; then oldest), then the first part of each it may take. Runs
    -- are few; walking them first means a run the agent already holds a part
    -- of is skipped whole, not part by part.
    FOR v_run IN
        SELECT r.id, r.rank, r.explicit_agents, r.state FROM runs r
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
    -- What the lease hands out, from the update (not read again).
    UPDATE parts p SET state = 'running', attempt = p.attempt + 1, owner = p_agent,
        lease_expires_at = p_now + r.lease_ttl_ms, progress_done = NULL, progress_total = NULL
    FROM runs r WHERE p.id = v_part AND r.id = v_run.id
    RETURNING p.attempt, p.lease_expires_at, p.label, p.targets, p.payload, r.task_id, r.spec,
              r.secrets, r.plugin_sha256
    INTO v_lease;
    INSERT INTO leases (part_id, attempt, agent, leased_at)
    VALUES (v_part, v_lease.attempt, p_agent, p_now);
    INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
    VALUES (p_now, 'part', v_part, 'state', 'waiting', 'running',
            json_build_object('agent', p_agent, 'attempt', v_lease.attempt)::TEXT);
    -- The run's first lease starts it (scheduler::run_state_from_parts).
    IF v_run.state = 'waiting' THEN
        UPDATE runs SET state = 'running' WHERE runs.id = v_run.id AND runs.state = 'waiting';
        IF FOUND THEN
            INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
            VALUES (p_now, 'run', v_run.id, 'state', 'waiting', 'running', '{}');
        END IF;
    END IF;
    id := v_part;
    run_id := v_run.id;
    attempt := v_lease.attempt;
    lease_expires_at := v_lease.lease_expires_at;
    label := v_lease.label;
    targets := v_lease.targets;
    payload := v_lease.payload;
    task_id := v_lease.task_id;
    spec := v_lease.spec;
    secrets := v_lease.secrets;
    plugin_sha256 := v_lease.plugin_sha256;
    RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION jobstack_lease(p_now BIGINT, p_agent_id BIGINT, p_agent TEXT,
                               p_any_plugin BOOLEAN, p_plugins TEXT[])
RETURNS TABLE (id BIGINT, run_id BIGINT, attempt BIGINT, lease_expires_at BIGINT,
               label TEXT, targets TEXT, payload TEXT, task_id BIGINT, spec TEXT,
               secrets TEXT, plugin_sha256 TEXT)
LANGUAGE plpgsql
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- A lease need not wait for the WAL flush (see 0001).
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE agents SET last_seen = p_now WHERE agents.id = p_agent_id AND last_seen < p_now - 1000;
    RETURN QUERY SELECT * FROM jobstack_lease_in(p_now, p_agent_id, p_agent, p_any_plugin, p_plugins);
END
$$;

CREATE FUNCTION jobstack_submit_and_lease(
    p_part BIGINT, p_attempt BIGINT, p_agent TEXT, p_agent_id BIGINT,
    p_now BIGINT, p_status TEXT, p_output TEXT, p_error TEXT, p_emitted TEXT, p_logs TEXT,
    p_started_at BIGINT, p_duration_ms BIGINT, p_applied BOOLEAN, p_end_reason TEXT,
    p_revoke_attempt BIGINT, p_expect_state TEXT, p_expect_attempt BIGINT,
    p_expect_owner TEXT, p_to TEXT, p_keep_owner BOOLEAN, p_owner TEXT,
    p_available_at BIGINT, p_part_error TEXT, p_detail TEXT,
    p_any_plugin BOOLEAN, p_plugins TEXT[])
RETURNS TABLE (outcome TEXT, run_id BIGINT,
               lease_id BIGINT, lease_run_id BIGINT, lease_attempt BIGINT,
               lease_expires_at BIGINT, label TEXT, targets TEXT, payload TEXT,
               task_id BIGINT, spec TEXT, secrets TEXT, plugin_sha256 TEXT)
LANGUAGE plpgsql
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_outcome TEXT;
    v_run BIGINT;
BEGIN
    SELECT s.outcome, s.run_id INTO v_outcome, v_run
    FROM jobstack_submit(p_part, p_attempt, p_agent, p_agent_id, p_now, p_status, p_output,
                         p_error, p_emitted, p_logs, p_started_at, p_duration_ms, p_applied,
                         p_end_reason, p_revoke_attempt, p_expect_state, p_expect_attempt,
                         p_expect_owner, p_to, p_keep_owner, p_owner, p_available_at,
                         p_part_error, p_detail) s;
    IF v_outcome IS NULL OR v_outcome NOT IN ('recorded', 'changed', 'refresh') THEN
        -- Not stored (a conflict, or no such part): no lease either.
        RETURN QUERY SELECT v_outcome, v_run, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::BIGINT, NULL::TEXT,
            NULL::TEXT, NULL::TEXT;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT v_outcome, v_run, l.id, l.run_id, l.attempt, l.lease_expires_at, l.label,
           l.targets, l.payload, l.task_id, l.spec, l.secrets, l.plugin_sha256
    FROM (SELECT 1) AS one
    LEFT JOIN jobstack_lease_in(p_now, p_agent_id, p_agent, p_any_plugin, p_plugins) l ON true;
END
$$;

ALTER FUNCTION jobstack_submit(BIGINT, BIGINT, TEXT, BIGINT, BIGINT, TEXT, TEXT, TEXT, TEXT, TEXT,
                               BIGINT, BIGINT, BOOLEAN, TEXT, BIGINT, TEXT, BIGINT, TEXT, TEXT,
                               BOOLEAN, TEXT, BIGINT, TEXT, TEXT)
    SET plan_cache_mode = force_generic_plan;
