-- The inventory (runtime/src/inventory): assets merged from the observations
-- that finished results bring, with their keys, attributes and the source of
-- each, relations, sightings by task and history.

-- The data processor's queue is the results table: a finished, applied result
-- waits while `processing` is NULL; `done` or `failed` (with the reason) is
-- written in the transaction that merged its observations.
ALTER TABLE results ADD COLUMN processing TEXT;
ALTER TABLE results ADD COLUMN processing_error TEXT;
CREATE INDEX results_to_process ON results (received_at, part_id, attempt)
    WHERE processing IS NULL AND applied = 1 AND status = 'finished';
CREATE INDEX results_failed_processing ON results (run_id) WHERE processing = 'failed';

-- Ids are given by the merge (the next after the largest: merges never run at
-- once), so that a merge's statements are written before they run.
CREATE TABLE assets (
    id             INTEGER PRIMARY KEY,
    kind           TEXT    NOT NULL,
    name           TEXT,
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    disappeared_at INTEGER
);
CREATE INDEX assets_by_kind ON assets (kind, id);
CREATE INDEX assets_by_last_seen ON assets (last_seen);

-- A key is held by one asset of its family at a time (merge rule 1).
-- `address`: an ip key's address in targeting's fixed-width hex form, so that
-- a CIDR filter is a range scan.
CREATE TABLE asset_keys (
    family   TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    asset_id INTEGER NOT NULL REFERENCES assets (id),
    address  TEXT,
    PRIMARY KEY (family, name, value)
);
CREATE INDEX asset_keys_by_asset ON asset_keys (asset_id);
CREATE INDEX asset_keys_by_address ON asset_keys (address, asset_id) WHERE address IS NOT NULL;

-- Each attribute with its source. `value` is JSON text.
CREATE TABLE asset_attributes (
    asset_id    INTEGER NOT NULL REFERENCES assets (id),
    name        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    plugin      TEXT    NOT NULL,
    task_id     INTEGER NOT NULL,
    run_id      INTEGER NOT NULL,
    part_id     INTEGER NOT NULL,
    agent       TEXT    NOT NULL,
    observed_at INTEGER NOT NULL,
    PRIMARY KEY (asset_id, name)
);
CREATE INDEX asset_attributes_by_value ON asset_attributes (name, value);

-- One target per relation name (a VM runs on one host).
CREATE TABLE asset_relations (
    asset_id INTEGER NOT NULL REFERENCES assets (id),
    relation TEXT    NOT NULL,
    to_id    INTEGER NOT NULL REFERENCES assets (id),
    PRIMARY KEY (asset_id, relation)
);
CREATE INDEX asset_relations_to ON asset_relations (to_id);

-- The last run of each task that saw an asset, and the targets of the part
-- that saw it (the disappearance rule's coverage).
CREATE TABLE asset_sightings (
    task_id  INTEGER NOT NULL,
    asset_id INTEGER NOT NULL REFERENCES assets (id),
    run_id   INTEGER NOT NULL,
    scope    TEXT    NOT NULL,
    seen_at  INTEGER NOT NULL,
    PRIMARY KEY (task_id, asset_id)
);

-- History. `old` and `new` are JSON text.
CREATE TABLE asset_changes (
    id       INTEGER PRIMARY KEY,
    asset_id INTEGER NOT NULL REFERENCES assets (id),
    at       INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    subject  TEXT,
    old      TEXT,
    new      TEXT,
    run_id   INTEGER
);
CREATE INDEX asset_changes_by_asset ON asset_changes (asset_id, id);
CREATE INDEX asset_changes_by_run ON asset_changes (run_id, id);
CREATE INDEX asset_changes_by_time ON asset_changes (at);

-- Runs with processed results, swept once they ended (swept_at set).
CREATE TABLE inventory_sweeps (
    run_id   INTEGER PRIMARY KEY,
    swept_at INTEGER
);
CREATE INDEX inventory_sweeps_waiting ON inventory_sweeps (run_id) WHERE swept_at IS NULL;
