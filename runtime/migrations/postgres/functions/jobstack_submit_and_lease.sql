-- A result and the agent's next lease in one round trip and one transaction
-- (`Store::submit_and_lease`): jobstack_submit then, if the result was stored,
-- jobstack_lease_in. The lease waits for the WAL flush with the result, and
-- the result marks the agent seen. Its first columns are jobstack_submit's;
-- the lease's columns are NULL when no part was leased. An error in either
-- undoes both; the caller then sends the result alone, then leases.
-- SET: see jobstack_lease_in.
CREATE OR REPLACE FUNCTION jobstack_submit_and_lease(
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
