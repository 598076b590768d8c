-- Lower the lease mark of a part's run to the part's seq as the part becomes
-- waiting again (a retry, an expired lease, a resumed run), so that the next
-- lease's walk does not start past it. Parts are inserted only when their run
-- is split, before any lease, so no mark exists then: updates only.
-- The advisory lock, shared: see jobstack_advance_lease_mark.
CREATE OR REPLACE FUNCTION jobstack_lower_lease_mark()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(27252, (NEW.run_id % 2147483647)::INT);
    UPDATE lease_marks SET seq = NEW.seq WHERE run_id = NEW.run_id AND seq > NEW.seq;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER parts_lower_lease_mark
AFTER UPDATE OF state ON parts
FOR EACH ROW
WHEN (NEW.state = 'waiting' AND OLD.state <> 'waiting')
EXECUTE FUNCTION jobstack_lower_lease_mark();
