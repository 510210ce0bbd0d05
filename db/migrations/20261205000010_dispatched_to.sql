-- migrate:up

-- Which supervisor process a running job's start was sent to (an id the supervisor draws at each start).
-- After a scheduler restart, a start that this same supervisor does not own never reached it: the
-- attempt never ran and goes back in line uncharged, instead of counting as a crash.
ALTER TABLE jobs ADD COLUMN dispatched_to text;

CREATE OR REPLACE VIEW scheduler_jobs AS
SELECT job_id, type, seq, priority, status, cpu_units, memory_mb, depends_on,
       timeout_seconds, max_attempts, backoff_multiplier, initial_delay_seconds, max_delay_seconds, jitter,
       attempt_count, attempts_charged AS charged,
       extract(epoch FROM created_at)::float8 AS created_at,
       extract(epoch FROM run_at)::float8 AS run_at,
       extract(epoch FROM next_run_at)::float8 AS next_run_at,
       extract(epoch FROM ready_at)::float8 AS ready_at,
       extract(epoch FROM started_at)::float8 AS started_at,
       finished_at IS NULL AS live,
       dispatched_to
FROM jobs;

-- migrate:down

DROP VIEW scheduler_jobs;
CREATE VIEW scheduler_jobs AS
SELECT job_id, type, seq, priority, status, cpu_units, memory_mb, depends_on,
       timeout_seconds, max_attempts, backoff_multiplier, initial_delay_seconds, max_delay_seconds, jitter,
       attempt_count, attempts_charged AS charged,
       extract(epoch FROM created_at)::float8 AS created_at,
       extract(epoch FROM run_at)::float8 AS run_at,
       extract(epoch FROM next_run_at)::float8 AS next_run_at,
       extract(epoch FROM ready_at)::float8 AS ready_at,
       extract(epoch FROM started_at)::float8 AS started_at,
       finished_at IS NULL AS live
FROM jobs;
ALTER TABLE jobs DROP COLUMN dispatched_to;
