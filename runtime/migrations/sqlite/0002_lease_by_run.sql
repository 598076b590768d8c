-- jobstack schema, version 2 (SQLite): leasing walks the runs an agent may take
-- from first (store/sqlite/leasing.rs), in leasing order, from this index.
CREATE INDEX runs_to_lease ON runs (rank, id) WHERE state IN ('waiting', 'running');
