-- jobstack schema, version 6 (PostgreSQL): less work per part leased and
-- finished, in two steps.
--
-- 1. Leases start their walk at a mark kept per run instead of at the start
--    of the run's range of parts_to_lease.
--
-- A leased part's entry stays in parts_to_lease until vacuum removes it (an
-- update that moves a part out of 'waiting' cannot be HOT, and autovacuum
-- comes once a minute at most), so the range of a run being worked on starts
-- with the entries of every part leased since: after 33,000 leases, each pick
-- read 170 index pages (0.46 ms) before its part. A per-run mark, "no part
-- of this run with a lower seq is waiting", lets each pick start there
-- (8 pages). Measured with the hot function alone (three clients of three
-- agents each): 4,553 and 4,790 leases + results a second before, 5,758 and
-- 6,013 after, PostgreSQL's CPU per part 305-325 µs before, 236-250 after.
--
-- - lease_marks holds the marks; a run without a row has mark 0. Rows are
--   small and stay after their run ends (looked up by key only).
-- - A pick that finds its part more than 512 seqs past the mark advances
--   the mark (jobstack_advance_lease_mark): to the lowest seq still waiting,
--   found with one walk from the old mark.
-- - A part that becomes waiting again (a retry, an expired lease, a resumed
--   run) lowers its run's mark to its seq (trigger parts_lower_lease_mark).
--   Parts are inserted only when their run is split, before any lease, so
--   no mark exists yet then.
-- - An advance and a lowering must not interleave: an advance looking for
--   the lowest waiting seq does not see a part made waiting by a transaction
--   not yet committed, and would raise the mark over it. So an advance takes
--   the run's advisory lock exclusively (and gives up if it cannot: another
--   advance or a lowering is under way; the next far pick tries again), and
--   reads the mark and the parts after taking it; a lowering takes it shared,
--   so it waits for an advance to commit and then lowers the advanced mark.
-- - jobstack_lease_in and jobstack_finish_and_lease (below) are those of
--   0004 and 0005 with the mark in their walk, their pick and the advance;
--   lease_in now also forbids sequential scans (its mark lookup must use the
--   key whatever the statistics of the moment its generic plan was made).
--
-- 2. Fewer index entries and checks for each part leased and finished.
--
-- A part's lease and result wrote eleven index entries and ran two
-- foreign-key checks; now nine and none.
-- Measured with the batch function alone (one client of ten agents, its
-- statements' times from pg_stat_statements, four rounds): a call took
-- 1,207, 1,035, 1,262 and 1,180 µs before, 903, 820, 1,002 and 869 after
-- (the writes of the results 389 µs -> 264, of the leases 334 -> 221 in
-- the first round); without the results' key change 1,041 and 865.
--
-- - parts_expiring goes: parts_by_owner (running parts, by agent) now
--   carries the lease's expiry too, and the expiry sweep reads it whole
--   (running parts are a few per agent, and its entries of parts no longer
--   running go with vacuum). A lease wrote an entry in both.
-- - results are keyed by (run_id, part_id, attempt), and results_by_run
--   (the same columns) goes: one entry per result instead of two. A
--   result's part and attempt still identify it (a part belongs to one
--   run); the functions that record results name the new key in their
--   ON CONFLICT, so jobstack_submit (0002, with 0004's generic plans) is
--   restated below with that one change (and jobstack_finish_and_lease
--   with it as well as the marks).
-- - leases and results lose their foreign keys to parts: each check was a
--   lookup and a row lock on a part that the same statement had just
--   changed. Both tables are written only by these functions, for a part
--   they have just changed, and parts are never deleted (results.run_id
--   has had no foreign key since 0001, for the same reason).

CREATE TABLE lease_marks (
    run_id BIGINT PRIMARY KEY,
    seq    BIGINT NOT NULL
);

-- Advance the run's mark to the lowest seq still waiting (no change if none
-- waits, or if the run's advisory lock is taken: see the header).
CREATE FUNCTION jobstack_advance_lease_mark(p_run BIGINT, p_rank BIGINT)
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

-- Lower the mark of a part's run to the part's seq as it becomes waiting.
CREATE FUNCTION jobstack_lower_lease_mark()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(27252, (NEW.run_id % 2147483647)::INT);
    UPDATE lease_marks SET seq = NEW.seq WHERE run_id = NEW.run_id AND seq > NEW.seq;
    RETURN NULL;
END
$$;

CREATE TRIGGER parts_lower_lease_mark
AFTER UPDATE OF state ON parts
FOR EACH ROW
WHEN (NEW.state = 'waiting' AND OLD.state <> 'waiting')
EXECUTE FUNCTION jobstack_lower_lease_mark();

ALTER TABLE leases DROP CONSTRAINT leases_part_id_fkey;
ALTER TABLE results DROP CONSTRAINT results_part_id_fkey;
ALTER TABLE results DROP CONSTRAINT results_pkey;
ALTER TABLE results ADD PRIMARY KEY (run_id, part_id, attempt);
DROP INDEX results_by_run;
DROP INDEX parts_expiring;
DROP INDEX parts_by_owner;
CREATE INDEX parts_by_owner ON parts (owner, run_id, lease_expires_at) WHERE state = 'running';

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
    -- agent's row: updating the row on every lease wrote a row version each.
    PERFORM pg_advisory_xact_lock(27251, (p_agent_id % 2147483647)::INT);
    -- The runs this agent may take from, in leasing order (rank: forced,
    -- priority; then oldest), then the first part of each it may take. Runs
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

CREATE OR REPLACE FUNCTION jobstack_finish_and_lease(
    p_now BIGINT, p_parts BIGINT[], p_attempts BIGINT[], p_agents TEXT[], p_agent_ids BIGINT[],
    p_outputs TEXT[], p_errors TEXT[], p_emitted TEXT[], p_logs TEXT[],
    p_started_at BIGINT[], p_durations BIGINT[], p_details TEXT[],
    p_any_plugin BOOLEAN[], p_plugin_of INT[], p_plugins TEXT[], p_lock_ids BIGINT[])
RETURNS TABLE (item INT, outcome TEXT, run_id BIGINT,
               lease_id BIGINT, lease_run_id BIGINT, lease_attempt BIGINT,
               lease_expires_at BIGINT, label TEXT, targets TEXT, payload TEXT,
               task_id BIGINT, spec TEXT, secrets TEXT, plugin_sha256 TEXT)
LANGUAGE plpgsql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_ok INT[];            -- items whose result was applied
    v_ok_runs BIGINT[];    -- their parts' runs, aligned with v_ok
    v_ok_ranks BIGINT[];   -- and ranks
    v_refresh BIGINT[];    -- runs of applied results with no waiting part left
    v_rows INT;
    v_cand RECORD;
    v_part BIGINT;
    v_seq BIGINT;
    v_served INT := 0;
    v_taken BIGINT[] := '{}';        -- parts picked, in the order of ...
    v_taken_items INT[] := '{}';     -- ... the items they are leased to
    v_started_runs BIGINT[] := '{}'; -- waiting runs a lease starts
    v_far_runs BIGINT[] := '{}';     -- runs whose mark a pick found far behind, ...
    v_far_ranks BIGINT[] := '{}';    -- ... and their ranks
    -- The state a result's part must be in, as a variable: a parameter of
    -- the generic plan, so that no partial index on running parts can serve
    -- the compare-and-set. With the literal, the plan walked the whole of
    -- parts_by_owner (every running part of the fleet) for each batch.
    v_running TEXT := 'running';
BEGIN
    -- The results, in one statement: the compare-and-set (the update is the
    -- check and the row lock), then for the parts it changed the results'
    -- rows, the leases' end and the events; and the agents' "last seen".
    WITH changed AS (
        UPDATE parts p SET state = 'finished', lease_expires_at = NULL, available_at = p_now
        FROM unnest(p_parts, p_attempts, p_agents) WITH ORDINALITY AS u(part, attempt, agent, i)
        WHERE p.id = ANY (p_parts) AND p.id = u.part AND p.state = v_running
          AND p.attempt = u.attempt AND p.owner = u.agent
        RETURNING u.i::INT AS i, p.id AS part, p.run_id, p.rank),
    recorded AS (
        INSERT INTO results (part_id, attempt, run_id, agent, status, output, error, emitted,
                             logs, started_at, duration_ms, applied, received_at)
        SELECT c.part, p_attempts[c.i], c.run_id, p_agents[c.i], 'finished', p_outputs[c.i],
               p_errors[c.i], p_emitted[c.i], p_logs[c.i], p_started_at[c.i], p_durations[c.i],
               TRUE, p_now
        FROM changed c
        ON CONFLICT (run_id, part_id, attempt) DO NOTHING
        RETURNING 1),
    ended AS (
        UPDATE leases l SET ended_at = p_now, end_reason = 'result'
        FROM changed c
        WHERE l.part_id = ANY (p_parts) AND l.part_id = c.part
          AND l.attempt = p_attempts[c.i] AND l.ended_at IS NULL),
    moved AS (
        INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
        SELECT p_now, 'part', c.part, 'state', 'running', 'finished', p_details[c.i]
        FROM changed c),
    seen AS (
        UPDATE agents a SET last_seen = p_now
        WHERE a.id = ANY (p_lock_ids) AND a.last_seen < p_now - 1000)
    SELECT array_agg(c.i), array_agg(c.run_id), array_agg(c.rank),
           (SELECT count(*) FROM recorded)
    INTO v_ok, v_ok_runs, v_ok_ranks, v_rows
    FROM changed c;

    IF v_ok IS NOT NULL THEN
        -- A result already recorded: everything is undone (see above).
        IF v_rows <> cardinality(v_ok) THEN
            RAISE EXCEPTION 'a result of this batch is already recorded' USING ERRCODE = 'JS001';
        END IF;
        -- Runs with no part waiting may have ended (the caller refreshes
        -- them). Waiting parts are at the end of the run's range of
        -- parts_to_lease (see jobstack_submit).
        SELECT array_agg(c.run_id) INTO v_refresh
        FROM (SELECT DISTINCT d.run_id, d.rank FROM unnest(v_ok_runs, v_ok_ranks) AS d(run_id, rank)) c
        WHERE NOT EXISTS (SELECT 1 FROM (
                SELECT 1 FROM parts p
                WHERE p.rank = c.rank AND p.run_id = c.run_id AND p.state = 'waiting'
                ORDER BY p.rank DESC, p.run_id DESC, p.seq DESC
                LIMIT 1) w);
    END IF;

    -- The leases. Each agent's advisory lock first, in the order given
    -- (sorted by the caller: two batches never wait on each other in a
    -- circle), as in jobstack_lease_in.
    PERFORM pg_advisory_xact_lock(27251, (a.id % 2147483647)::INT)
    FROM unnest(p_lock_ids) AS a(id);
    -- Every run each item's agent may take from, by item, then in leasing
    -- order; each item takes the first part it may of the first run that
    -- has one, skipping parts picked for the items before it.
    FOR v_cand IN
        SELECT c.i, r.id AS run, r.rank, r.explicit_agents, r.state, coalesce(m.seq, 0) AS mark
        FROM unnest(v_ok) AS c(i)
        JOIN runs r ON r.state IN ('waiting', 'running')
        LEFT JOIN lease_marks m ON m.run_id = r.id
        WHERE (p_any_plugin[c.i]
               OR r.plugin IN (SELECT x.name FROM unnest(p_plugin_of, p_plugins) AS x(i, name)
                               WHERE x.i = c.i))
          AND (NOT r.explicit_agents
               OR EXISTS (SELECT 1 FROM run_agents ra
                          WHERE ra.run_id = r.id AND ra.agent_name = p_agents[c.i]))
          AND r.id NOT IN (SELECT q.run_id FROM parts q
                           WHERE q.state = 'running' AND q.owner = p_agents[c.i])
        ORDER BY c.i, r.rank, r.id
    LOOP
        CONTINUE WHEN v_cand.i = v_served;
        SELECT p.id, p.seq INTO v_part, v_seq
        FROM parts p
        WHERE p.rank = v_cand.rank AND p.run_id = v_cand.run AND p.seq >= v_cand.mark
          AND p.state = 'waiting'
          AND p.available_at <= p_now
          AND (p.pinned_agent IS NULL OR p.pinned_agent = p_agents[v_cand.i])
          AND (p.span_lo IS NULL OR v_cand.explicit_agents
               OR EXISTS (SELECT 1 FROM agent_networks n
                          WHERE n.agent_id = p_agent_ids[v_cand.i]
                            AND n.lo <= p.span_lo AND p.span_hi <= n.hi))
          AND p.id <> ALL (v_taken)
        ORDER BY p.rank, p.run_id, p.seq
        LIMIT 1
        FOR UPDATE OF p SKIP LOCKED;
        IF v_part IS NOT NULL THEN
            v_served := v_cand.i;
            v_taken := v_taken || v_part;
            v_taken_items := v_taken_items || v_cand.i;
            IF v_seq - v_cand.mark > 512 AND v_cand.run <> ALL (v_far_runs) THEN
                v_far_runs := v_far_runs || v_cand.run;
                v_far_ranks := v_far_ranks || v_cand.rank;
            END IF;
            IF v_cand.state = 'waiting' THEN
                v_started_runs := v_started_runs || v_cand.run;
            END IF;
        END IF;
    END LOOP;
    -- Most batches find every mark close: no statement for them.
    IF cardinality(v_far_runs) > 0 THEN
        PERFORM jobstack_advance_lease_mark(f.run, f.rank)
        FROM unnest(v_far_runs, v_far_ranks) AS f(run, rank);
    END IF;

    RETURN QUERY
    WITH leased AS (
        UPDATE parts p SET state = 'running', attempt = p.attempt + 1, owner = p_agents[k.i],
            lease_expires_at = p_now + r.lease_ttl_ms, progress_done = NULL,
            progress_total = NULL
        FROM unnest(v_taken, v_taken_items) AS k(part, i), runs r
        WHERE p.id = ANY (v_taken) AND p.id = k.part AND r.id = p.run_id
        RETURNING k.i, p.id, p.run_id, p.attempt, p.lease_expires_at, p.label, p.targets,
                  p.payload, r.task_id, r.spec, r.secrets, r.plugin_sha256),
    lease_rows AS (
        INSERT INTO leases (part_id, attempt, agent, leased_at)
        SELECT l.id, l.attempt, p_agents[l.i], p_now FROM leased l),
    lease_events AS (
        INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
        SELECT p_now, 'part', l.id, 'state', 'waiting', 'running',
               json_build_object('agent', p_agents[l.i], 'attempt', l.attempt)::TEXT
        FROM leased l)
    SELECT u.i::INT,
           CASE WHEN o.run_id IS NULL THEN 'conflict'
                WHEN o.run_id = ANY (v_refresh) THEN 'refresh'
                ELSE 'changed' END,
           o.run_id, l.id, l.run_id, l.attempt, l.lease_expires_at, l.label, l.targets,
           l.payload, l.task_id, l.spec, l.secrets, l.plugin_sha256
    FROM generate_subscripts(p_parts, 1) AS u(i)
    LEFT JOIN unnest(v_ok, v_ok_runs) AS o(i, run_id) ON o.i = u.i
    LEFT JOIN leased l ON l.i = u.i;

    -- A run's first lease starts it (after the lease's event, as in
    -- jobstack_lease_in).
    WITH started AS (
        UPDATE runs r SET state = 'running'
        WHERE r.id = ANY (v_started_runs) AND r.state = 'waiting'
        RETURNING r.id)
    INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
    SELECT p_now, 'run', s.id, 'state', 'waiting', 'running', '{}' FROM started s;
END
$$;
