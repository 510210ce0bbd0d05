-- migrate:up

-- Cron schedules (issue 12). The active scheduler fires each due tick as one job whose id is
-- `<schedule_id>:<tick in UTC ISO>` and records the tick here in the same transaction, so neither a
-- restart nor a second scheduler can fire a tick twice (the job id is the primary key of jobs).
CREATE TABLE schedules (
    -- no colon: the colon separates the schedule from the tick in its jobs' ids, which must fit in 128
    schedule_id text PRIMARY KEY CHECK (schedule_id ~ '^[A-Za-z0-9._-]+$' AND length(schedule_id) <= 100),
    cron text NOT NULL,
    timezone text NOT NULL,
    -- the job every tick submits, as the API validated it (type, priority, payload, resources, retry, timeout)
    job jsonb NOT NULL,
    overlap text NOT NULL CHECK (overlap IN ('skip', 'allow')),
    catch_up text NOT NULL CHECK (catch_up IN ('none', 'one', 'all')),
    paused boolean NOT NULL DEFAULT false,
    -- every tick up to here is decided (fired, skipped for overlap, or passed over as missed): the next
    -- pass starts after it. Creating, resuming or changing the timing moves it to that moment, so that
    -- ticks from before it are never caught up.
    checked_through timestamptz NOT NULL DEFAULT now(),
    last_fired_at timestamptz,  -- the tick of the last job submitted
    last_job_id text,
    -- bumped by every change through the API: the scheduler fires only for the version it planned with
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The schedule whose tick submitted a job. No foreign key: the jobs of a deleted schedule stay as history.
-- Written once at insert and never updated, so the index below does not cost live jobs their HOT updates.
ALTER TABLE jobs ADD COLUMN schedule_id text;
CREATE INDEX jobs_schedule_seq_idx ON jobs (schedule_id, seq) WHERE schedule_id IS NOT NULL;

-- Per-type dispatch controls, enforced by the scheduler; a type without a row has none.
CREATE TABLE type_controls (
    type text PRIMARY KEY CHECK (length(type) BETWEEN 1 AND 128),
    paused boolean NOT NULL DEFAULT false,
    max_running integer CHECK (max_running >= 1),
    max_starts_per_second double precision CHECK (max_starts_per_second > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- migrate:down

DROP TABLE type_controls;
DROP INDEX jobs_schedule_seq_idx;
ALTER TABLE jobs DROP COLUMN schedule_id;
DROP TABLE schedules;
