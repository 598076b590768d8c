-- A lease alone (`Store::lease`): one statement in its own transaction, one
-- round trip. jobstack_lease_in does the work; this marks the agent seen (at
-- most once a second) and commits without waiting for the WAL flush: a lease
-- lost in a crash leaves its part waiting, and the lost attempt's result is
-- refused. SET: see jobstack_lease_in.
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
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE agents SET last_seen = p_now WHERE agents.id = p_agent_id AND last_seen < p_now - 1000;
    RETURN QUERY SELECT * FROM jobstack_lease_in(p_now, p_agent_id, p_agent, p_any_plugin, p_plugins);
END
$$;
