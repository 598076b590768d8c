-- The finished results of several agents, each with the agent's next lease,
-- in one call with set-based statements (store/postgres/finish_batch.rs): each
-- step is one statement for the whole batch, except the pick of each agent's
-- part (it must skip the parts picked for the agents before it).
--
-- The rules are jobstack_submit's for a finished result of the lease the
-- agent holds, and jobstack_lease_in's for the lease:
-- - an item whose part is not as assumed (running, this attempt, this owner)
--   is answered 'conflict' and changes nothing; the caller judges it alone;
-- - a result already recorded (a copy that raced this one) raises JS001 and
--   undoes the whole batch; the caller then applies each item alone;
-- - an item's lease is made only if its result was applied, and an agent
--   appears at most once in a batch (the caller defers a second request).
-- Items are numbered from 1 in the order of the arrays.
--
-- SET: see jobstack_lease_in; besides, joins are nested loops from the batch's
-- arrays into the tables' indexes whatever the statistics say (the batch is a
-- few rows, and `id = ANY (array)` puts each table's key in the index condition).
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
    -- the generic plan, so that no partial index on running parts (such as
    -- parts_by_owner, every running part of the fleet) serves the
    -- compare-and-set instead of the parts' key.
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
