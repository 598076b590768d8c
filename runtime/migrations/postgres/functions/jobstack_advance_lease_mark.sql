-- Advance a run's lease mark (table lease_marks) to the lowest seq still
-- waiting, found with one walk from the old mark; no change if none waits.
-- Called by a pick that found its part more than 512 seqs past the mark.
--
-- An advance and a lowering (jobstack_lower_lease_mark) must not interleave:
-- an advance does not see a part made waiting by a transaction not yet
-- committed, and would raise the mark over it. So an advance takes the run's
-- advisory lock exclusively, and gives up if it cannot (a lowering or another
-- advance is under way; the next far pick tries again); a lowering takes it
-- shared, so it waits for an advance to commit and then lowers its mark.
-- SET: see jobstack_lease_in.
CREATE OR REPLACE FUNCTION jobstack_advance_lease_mark(p_run BIGINT, p_rank BIGINT)
RETURNS VOID
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(27252, (p_run % 2147483647)::INT) THEN
        RETURN;
    END IF;
    -- A statement after the lock: its snapshot sees every lowering that
    -- took the lock before this advance.
    INSERT INTO lease_marks (run_id, seq)
    SELECT p_run, w.seq
    FROM (SELECT coalesce((SELECT m.seq FROM lease_marks m WHERE m.run_id = p_run), 0) AS seq) old,
         LATERAL (SELECT p.seq FROM parts p
                  WHERE p.rank = p_rank AND p.run_id = p_run AND p.seq >= old.seq
                    AND p.state = 'waiting'
                  ORDER BY p.rank, p.run_id, p.seq
                  LIMIT 1) w
    ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq;
END
$$;
