-- migrate:up

-- The write path, made cheaper per job (issue 10). Nothing here changes what the service stores.

-- 1. No foreign keys from the history tables to jobs. Each insert into job_logs or attempts ran a
--    referential-integrity query that also locked and WAL-logged the job row; the service writes those
--    rows only for jobs it has committed, and it never deletes a job (retention, when it comes, deletes
--    a job's rows explicitly).
ALTER TABLE job_logs DROP CONSTRAINT job_logs_job_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_job_id_fkey;

-- 2. Status changes of a live job become HOT updates (no index entry written): no index may mention
--    `status`, as a key or in a partial index's predicate (PostgreSQL counts both). The live set is "not
--    finished" instead, which the finished_iff_terminal constraint makes the same set; a job's
--    finished_at changes once, at its terminal transition (and back at a re-drive). Filters on a terminal
--    status (the DLQ, listing succeeded jobs) use terminal_status, a copy of status written in that same
--    terminal update (which is never HOT anyway, since finished_at changes).
ALTER TABLE jobs ADD COLUMN terminal_status job_status;
UPDATE jobs SET terminal_status = status WHERE finished_at IS NOT NULL;
ALTER TABLE jobs ADD CONSTRAINT terminal_status_mirrors_status
    CHECK ((finished_at IS NULL AND terminal_status IS NULL) OR terminal_status = status);
DROP INDEX jobs_status_seq_idx;
DROP INDEX jobs_live_idx;
CREATE INDEX jobs_live_idx ON jobs (seq) WHERE finished_at IS NULL;
CREATE INDEX jobs_terminal_status_seq_idx ON jobs (terminal_status, seq) WHERE terminal_status IS NOT NULL;

-- 3. Room on each page for the new versions of its rows, so that the updates stay on the page (HOT).
ALTER TABLE jobs SET (fillfactor = 80);
ALTER TABLE attempts SET (fillfactor = 80);

-- The scheduler's view says which jobs are live in the same terms, so that its loads use jobs_live_idx.
CREATE OR REPLACE VIEW scheduler_jobs AS
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

-- 4. A job's submission log lines, derived from its row: the submit statements write them in SQL from
--    the rows they insert, instead of sending a second copy of every id over the wire.
CREATE FUNCTION submission_log_lines(text, job_status, text, timestamptz)
RETURNS TABLE (job_id text, at timestamptz, level text, event text, message text, n int)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- $1 job_id, $2 status as committed, $3 its error (upstream_failed), $4 created_at
    SELECT $1, $4, 'info', 'submitted', 'submitted as ' || $2::text, 1
    UNION ALL
    SELECT $1, $4, 'error', 'upstream_failed', 'upstream_failed: ' || $3, 2
    WHERE $2 = 'upstream_failed'
    UNION ALL
    SELECT $1, $4, 'info', $2::text, $2::text || ' at submission', 2
    WHERE $2 IN ('blocked', 'scheduled')
$$;

-- migrate:down
DROP FUNCTION submission_log_lines(text, job_status, text, timestamptz);
DROP VIEW scheduler_jobs;
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
ALTER TABLE attempts RESET (fillfactor);
ALTER TABLE jobs RESET (fillfactor);
DROP INDEX jobs_terminal_status_seq_idx;
DROP INDEX jobs_live_idx;
CREATE INDEX jobs_live_idx ON jobs (seq) WHERE status IN ('blocked', 'pending', 'scheduled', 'running');
CREATE INDEX jobs_status_seq_idx ON jobs (status, seq);
ALTER TABLE jobs DROP CONSTRAINT terminal_status_mirrors_status;
ALTER TABLE jobs DROP COLUMN terminal_status;
ALTER TABLE attempts ADD CONSTRAINT attempts_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs (job_id) ON DELETE CASCADE;
ALTER TABLE job_logs ADD CONSTRAINT job_logs_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs (job_id) ON DELETE CASCADE;
