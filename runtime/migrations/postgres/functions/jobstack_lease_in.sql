-- Lease the best waiting part the agent may take, inside the caller's
-- transaction; no row when there is none. The body shared by jobstack_lease
-- (a lease alone) and jobstack_submit_and_lease (a lease with a result). The
-- policy (leasing order, who may take which part) is the scheduler's, written
-- next to the calls in store/postgres/leasing.rs; jobstack_finish_and_lease
-- applies the same rules to several agents at once: change both together.
--
-- SET, here and in the other hot functions:
-- - enable_sort, enable_bitmapscan off: a queue's statistics are always stale,
--   and the only plan left walks the index in order and stops at the first
--   match instead of fetching and sorting every waiting part;
-- - enable_seqscan off: the mark's lookup uses its key whatever the
--   statistics were when the generic plan was made;
-- - jit off: the costs inflated by the settings above would JIT-compile these
--   single-row statements;
-- - plan_cache_mode: with enable_sort off PostgreSQL would plan every call anew.
CREATE OR REPLACE FUNCTION jobstack_lease_in(p_now BIGINT, p_agent_id BIGINT, p_agent TEXT,
                               p_any_plugin BOOLEAN, p_plugins TEXT[])
RETURNS TABLE (id BIGINT, run_id BIGINT, attempt BIGINT, lease_expires_at BIGINT,
               label TEXT, targets TEXT, payload TEXT, task_id BIGINT, spec TEXT,
               secrets TEXT, plugin_sha256 TEXT)
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_run RECORD;
    v_part BIGINT;
    v_seq BIGINT;
    v_lease RECORD;
BEGIN
    -- Queue the leases of one agent (one per slot), so the next one sees this
    -- one's part: one part per run per agent. An advisory lock, not the
    -- agent's row: no row version written per lease.
    PERFORM pg_advisory_xact_lock(27251, (p_agent_id % 2147483647)::INT);
    -- The runs this agent may take from, in leasing order (rank: forced,
    -- priority; then oldest), then the first part of each it may take (from
    -- the run's lease mark, skipping parts other daemons are leasing). Runs
    -- are few; walking them first means a run the agent already holds a part
    -- of is skipped whole, not part by part.
    FOR v_run IN
        SELECT r.id, r.rank, r.explicit_agents, r.state, coalesce(m.seq, 0) AS mark
        FROM runs r LEFT JOIN lease_marks m ON m.run_id = r.id
        WHERE r.state IN ('waiting', 'running')
          AND (p_any_plugin OR r.plugin = ANY (p_plugins))
          AND (NOT r.explicit_agents
               OR EXISTS (SELECT 1 FROM run_agents ra
                          WHERE ra.run_id = r.id AND ra.agent_name = p_agent))
          AND r.id NOT IN (SELECT q.run_id FROM parts q
                           WHERE q.state = 'running' AND q.owner = p_agent)
        ORDER BY r.rank, r.id
    LOOP
        SELECT p.id, p.seq INTO v_part, v_seq
        FROM parts p
        WHERE p.rank = v_run.rank AND p.run_id = v_run.id AND p.seq >= v_run.mark
          AND p.state = 'waiting'
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
    -- Found far past the mark: move the mark up for the next walks.
    IF v_seq - v_run.mark > 512 THEN
        PERFORM jobstack_advance_lease_mark(v_run.id, v_run.rank);
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
