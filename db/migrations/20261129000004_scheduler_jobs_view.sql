-- migrate:up

-- A job as the scheduler rebuilds it: the columns it needs, times as epoch seconds. One definition for
-- the start-up load, the sweep for lost notices and the re-drive of a failed job's descendants. The
-- status column stays the enum, so filters on it still use jobs_live_idx through the view.
CREATE VIEW scheduler_jobs AS
SELECT job_id, type, seq, priority, status, cpu_units, memory_mb, depends_on,
       timeout_seconds, max_attempts, backoff_multiplier, initial_delay_seconds, max_delay_seconds, jitter,
       attempt_count, attempts_charged AS charged,
       extract(epoch FROM created_at)::float8 AS created_at,
       extract(epoch FROM run_at)::float8 AS run_at,
       extract(epoch FROM next_run_at)::float8 AS next_run_at,
       extract(epoch FROM ready_at)::float8 AS ready_at,
       extract(epoch FROM started_at)::float8 AS started_at
FROM jobs;

-- migrate:down
DROP VIEW scheduler_jobs;
