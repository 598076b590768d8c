-- Runs that start runs, the agents' monitoring, and webhooks delivered from
-- a durable outbox (runtime/src/notify).

-- A chained run records the upstream run that caused it; one run per
-- (task, cause), so each upstream run starts a follower once.
ALTER TABLE runs ADD COLUMN caused_by BIGINT REFERENCES runs (id);
CREATE UNIQUE INDEX runs_by_cause ON runs (task_id, caused_by) WHERE caused_by IS NOT NULL;

-- Set while the task follows another: upstream runs that ended earlier start
-- nothing.
ALTER TABLE tasks ADD COLUMN chained_since BIGINT;
CREATE INDEX tasks_following ON tasks (id) WHERE chained_since IS NOT NULL;

-- When the monitor found the agent down (no request for the set time).
ALTER TABLE agents ADD COLUMN down_since BIGINT;

-- Subscriptions: where to deliver which event kinds, signed with `secret`.
-- `cursor`: the last outbox event delivered or dead-lettered, in order;
-- `attempts` and `next_attempt_at`: the retries of the event after it.
-- `claimed_by` until `claimed_until`: the daemon delivering it.
CREATE TABLE webhook_subscriptions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             TEXT    NOT NULL,
    kinds           TEXT    NOT NULL,
    secret          TEXT    NOT NULL,
    cursor          BIGINT    NOT NULL,
    attempts        BIGINT    NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error      TEXT,
    delivered       BIGINT    NOT NULL DEFAULT 0,
    created_at      BIGINT    NOT NULL,
    claimed_by      TEXT,
    claimed_until   BIGINT
);

-- The outbox: every event a subscription may want, in the order it was fed
-- (ids are given by the feeder, which one daemon at a time runs: see
-- webhook_feed). `body` is the JSON delivered, without its signature.
CREATE TABLE webhook_events (
    id   BIGINT PRIMARY KEY,
    kind TEXT    NOT NULL,
    at   BIGINT    NOT NULL,
    body TEXT    NOT NULL
);
CREATE INDEX webhook_events_by_kind ON webhook_events (kind, id);

-- How far the feeder read the event log and the inventory's changes. One row;
-- a feed moves it with a compare-and-set, so two daemons never feed the same
-- events.
CREATE TABLE webhook_feed (
    id            BIGINT PRIMARY KEY,
    events_after  BIGINT NOT NULL,
    changes_after BIGINT NOT NULL
);
INSERT INTO webhook_feed (id, events_after, changes_after)
    SELECT 1, COALESCE((SELECT MAX(id) FROM events), 0),
           COALESCE((SELECT MAX(id) FROM asset_changes), 0);

-- Events a subscription gave up on after its attempts; re-sent by an admin.
CREATE TABLE webhook_dead_letters (
    subscription_id BIGINT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_id        BIGINT NOT NULL REFERENCES webhook_events (id),
    attempts        BIGINT NOT NULL,
    error           TEXT    NOT NULL,
    at              BIGINT    NOT NULL,
    PRIMARY KEY (subscription_id, event_id)
);
