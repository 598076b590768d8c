-- A task's first retry backoff, kept with each run like its retries (the
-- runs made before keep the earlier fixed 5 s).
ALTER TABLE runs ADD COLUMN retry_backoff_ms BIGINT NOT NULL DEFAULT 5000;

-- A retired plugin version stays (its name and version stay taken, its runs
-- keep their module) but no new run uses it.
ALTER TABLE plugins ADD COLUMN retired_at BIGINT;
