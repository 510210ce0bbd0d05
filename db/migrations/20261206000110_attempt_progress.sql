-- migrate:up

-- A running attempt's `ctx.progress(fraction, message)` and `ctx.heartbeat()`, written by the scheduler
-- with its next commit (service/scheduler/beats.py). On the attempt, not the job: a retry starts with no
-- progress and no heartbeat of its own, and the job shows its current attempt's (GET /jobs/{id}).
ALTER TABLE attempts
    ADD COLUMN progress double precision CHECK (progress >= 0 AND progress <= 1),
    ADD COLUMN progress_message text,
    ADD COLUMN progress_at timestamptz,
    ADD COLUMN heartbeat_at timestamptz;

-- Progress is streamed as a `progress` event: a resuming client replays it like any other.
ALTER TABLE job_events
    ADD COLUMN progress double precision,
    ADD COLUMN message text;

-- migrate:down

ALTER TABLE job_events DROP COLUMN message, DROP COLUMN progress;
ALTER TABLE attempts DROP COLUMN heartbeat_at, DROP COLUMN progress_at, DROP COLUMN progress_message,
    DROP COLUMN progress;
