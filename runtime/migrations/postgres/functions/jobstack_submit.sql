-- Record a result and apply the verdict the scheduler reached on the part as
-- it read it (store/postgres/results.rs): a compare-and-set on (state,
-- attempt, owner) under the part's row lock. Answers the part's run and
-- 'conflict' (the part is not as expected: read it and judge again),
-- 'recorded' (stored, no state change asked), 'changed' (the part moved; the
-- run cannot have ended: a part is still waiting) or 'refresh' (the part
-- moved and none is waiting: the caller derives the run's state under the
-- run's lock). A result of this attempt already stored raises JS001, which
-- undoes the change (the caller answers "duplicate").
-- SET: see jobstack_lease_in.
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
SET plan_cache_mode = force_generic_plan
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
    ON CONFLICT (run_id, part_id, attempt) DO NOTHING;
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
