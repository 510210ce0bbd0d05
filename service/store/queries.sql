-- Every SQL statement of the service. One block per query, loaded once by service/store/gateway.py.
-- Bulk statements take one array per column and unnest them: one round trip per burst, not per job.

-- name: find_jobs
-- Idempotency and dependency checks at submit: what already exists among these ids.
SELECT job_id, status::text AS status, request_hash
FROM jobs
WHERE job_id = ANY($1::text[]);

-- name: insert_jobs
-- New jobs and their submission log lines in one statement: with no dependency to check, a group
-- commit is this statement alone, in autocommit (one round trip, one commit). Ids that exist already
-- are skipped (ON CONFLICT) and come back as replays.
WITH ins AS (
    INSERT INTO jobs (
        job_id, type, priority, status, payload, cpu_units, memory_mb, depends_on, timeout_seconds,
        max_attempts, backoff_multiplier, initial_delay_seconds, max_delay_seconds, jitter,
        run_at, next_run_at, ready_at, finished_at, terminal_status, error, request_hash, created_at, updated_at
    )
    SELECT j.job_id, j.type, j.priority::job_priority, j.status::job_status, j.payload::jsonb,
           j.cpu_units, j.memory_mb,
           -- most jobs have no dependencies: skip the per-row subquery for them
           CASE WHEN j.depends_on = '[]' THEN '{}'::text[]
                ELSE ARRAY(SELECT jsonb_array_elements_text(j.depends_on::jsonb)) END,
           j.timeout_seconds, j.max_attempts, j.backoff_multiplier, j.initial_delay_seconds,
           j.max_delay_seconds, j.jitter, j.run_at,
           CASE WHEN j.status = 'scheduled' THEN j.run_at END,
           CASE WHEN j.status = 'pending' THEN now() END,
           CASE WHEN j.status = 'upstream_failed' THEN now() END,
           CASE WHEN j.status = 'upstream_failed' THEN 'upstream_failed'::job_status END,
           j.error, j.request_hash, now(), now()
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::text[],
        $9::float8[], $10::int[], $11::float8[], $12::float8[], $13::float8[], $14::float8[],
        $15::timestamptz[], $16::text[], $17::bytea[]
    ) WITH ORDINALITY AS j(job_id, type, priority, status, payload, cpu_units, memory_mb, depends_on,
           timeout_seconds, max_attempts, backoff_multiplier, initial_delay_seconds, max_delay_seconds, jitter,
           run_at, error, request_hash, ord)
    ORDER BY j.ord
    ON CONFLICT (job_id) DO NOTHING
    RETURNING job_id, seq, status, error, created_at
),
logged AS (
    INSERT INTO job_logs (job_id, attempt, at, level, event, message)
    SELECT l.job_id, NULL, l.at, l.level, l.event, l.message
    FROM ins, LATERAL submission_log_lines(ins.job_id, ins.status, ins.error, ins.created_at) AS l
    ORDER BY ins.seq, l.n
    RETURNING 1
)
SELECT job_id, seq, extract(epoch FROM created_at)::float8 AS created_at FROM ins;

-- name: insert_copied_logs
-- The submission log lines of jobs just written by COPY (their seqs), in seq order.
INSERT INTO job_logs (job_id, attempt, at, level, event, message)
SELECT l.job_id, NULL, l.at, l.level, l.event, l.message
FROM jobs j, LATERAL submission_log_lines(j.job_id, j.status, j.error, j.created_at) AS l
WHERE j.seq = ANY($1::bigint[])
ORDER BY j.seq, l.n;

-- name: reserve_seqs
-- Sequence numbers for a bulk COPY of $1 jobs (in order), and the transaction's time for their created_at.
SELECT nextval('jobs_seq_seq') AS seq, now() AS now FROM generate_series(1, $1::int) ORDER BY 1;

-- name: insert_edges
INSERT INTO job_dependencies (job_id, depends_on)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING;

-- name: get_job
-- The current (last) attempt's progress and heartbeat come with the job, by its primary key.
SELECT j.*, (
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'attempt', a.attempt, 'started_at', a.started_at, 'finished_at', a.finished_at,
        'outcome', a.outcome, 'error', a.error, 'worker_pid', a.worker_pid) ORDER BY a.attempt), '[]'::jsonb)
    FROM attempts a WHERE a.job_id = j.job_id
) AS attempts, cur.progress, cur.progress_message, cur.progress_at, cur.heartbeat_at
FROM jobs j
LEFT JOIN attempts cur ON cur.job_id = j.job_id AND cur.attempt = j.attempt_count
WHERE j.job_id = $1;

-- name: list_jobs
-- Keyset pagination, newest first. {where} and {limit} are filled in by gateway.list_jobs with fixed
-- condition fragments and parameter numbers (never values): one statement text per filter combination.
SELECT j.*, '[]'::jsonb AS attempts, cur.progress, cur.progress_message, cur.progress_at, cur.heartbeat_at
FROM jobs j
LEFT JOIN attempts cur ON cur.job_id = j.job_id AND cur.attempt = j.attempt_count
WHERE {where}
ORDER BY j.seq DESC
LIMIT {limit};

-- name: get_logs
SELECT id, extract(epoch FROM at)::float8 AS at, attempt, level, event, message, data::text AS data
FROM job_logs
WHERE job_id = $1 AND id > $2
ORDER BY id
LIMIT $3;

-- name: count_by_status
SELECT status::text AS status, count(*) AS n FROM jobs GROUP BY status;

-- name: load_live_jobs
-- Every job that is not terminal and was created since $1 (epoch seconds; 0 for all): the scheduler's
-- whole state at start-up, and the sweep that catches a submission whose notice was lost (the API
-- committed while the scheduler restarted, or died between commit and notice). `live` is
-- `finished_at IS NULL`, the predicate of jobs_live_idx.
SELECT *
FROM scheduler_jobs
WHERE live AND created_at >= $1
ORDER BY seq;

-- name: job_statuses
SELECT job_id, status::text AS status FROM jobs WHERE job_id = ANY($1::text[]);

-- name: load_redrive
-- A failed job and every upstream_failed job downstream of it.
WITH RECURSIVE downstream(job_id) AS (
    SELECT $1::text
    UNION
    SELECT d.job_id
    FROM job_dependencies d
    JOIN downstream ON d.depends_on = downstream.job_id
    JOIN jobs c ON c.job_id = d.job_id AND c.status = 'upstream_failed'
)
SELECT *
FROM scheduler_jobs
WHERE job_id IN (SELECT job_id FROM downstream)
ORDER BY seq;

-- name: running_resources
SELECT coalesce(sum(cpu_units), 0)::int AS cpu_units, coalesce(sum(memory_mb), 0)::bigint AS memory_mb
FROM jobs WHERE finished_at IS NULL AND status = 'running';

-- name: try_scheduler_lock
-- Ownership of scheduling for this database: a session advisory lock, released by PostgreSQL itself
-- when the holder's connection ends (a crash, a kill -9, a partition), never by guessing from age.
SELECT pg_try_advisory_lock(7461736171);

-- name: last_event_seq
SELECT coalesce(max(seq), 0) FROM job_events;

-- name: prune_events
DELETE FROM job_events WHERE seq <= $1;

-- name: prune_finished_jobs
-- Retention: up to $3 finished jobs whose time is up ($1 for succeeded and cancelled, $2 for failed and
-- upstream_failed; NULL keeps that class forever), with their attempts and log lines. A job that a live
-- job depends on stays: a scheduler rebuilding that live job reads its dependencies' statuses from here.
-- The oldest first, by seq through the partial index of finished jobs; dependency edges go by cascade.
WITH doomed AS (
    SELECT j.job_id, j.terminal_status
    FROM jobs j
    WHERE j.terminal_status IS NOT NULL
      AND ((j.terminal_status IN ('succeeded', 'cancelled') AND j.finished_at < $1)
        OR (j.terminal_status IN ('failed', 'upstream_failed') AND j.finished_at < $2))
      AND NOT EXISTS (
          SELECT 1 FROM job_dependencies d JOIN jobs child ON child.job_id = d.job_id
          WHERE d.depends_on = j.job_id AND child.finished_at IS NULL)
    ORDER BY j.seq
    LIMIT $3
), logs AS (
    DELETE FROM job_logs l USING doomed WHERE l.job_id = doomed.job_id
), attempts AS (
    DELETE FROM attempts a USING doomed WHERE a.job_id = doomed.job_id
)
DELETE FROM jobs j USING doomed WHERE j.job_id = doomed.job_id
RETURNING j.job_id, doomed.terminal_status::text AS status;

-- name: events_after
-- Replay for a reconnecting stream client; the primary key walks seq in order.
SELECT seq, extract(epoch FROM at)::float8 AS at, job_id, type, priority::text AS priority,
       status::text AS status, event, attempt, error, progress, message
FROM job_events
WHERE seq > $1
ORDER BY seq
LIMIT $2;

-- name: first_event_seq
SELECT min(seq) FROM job_events;


-- name: ping
SELECT 1;

-- name: apply_turn
-- Everything one scheduler turn changed, as ONE statement (one round trip, one commit): attempt rows
-- closed or given their worker pid, heartbeat or progress, attempts opened, each job's final state of the
-- turn, its log lines and stream events. Each row is touched by one part only (the caller merges per job and per attempt:
-- PostgreSQL applies one update per row in a statement). Returns what the workers of started jobs need.
WITH
attempt_changes AS (
    UPDATE attempts a
    SET finished_at = coalesce(a.finished_at, to_timestamp(c.closed_at)),
        outcome = coalesce(a.outcome, c.outcome::attempt_outcome),
        error = CASE WHEN a.finished_at IS NULL AND c.closed_at IS NOT NULL THEN c.error ELSE a.error END,
        worker_pid = coalesce(c.pid, a.worker_pid),
        progress = CASE WHEN c.progress_at IS NULL THEN a.progress ELSE c.progress END,
        progress_message = CASE WHEN c.progress_at IS NULL THEN a.progress_message ELSE c.progress_message END,
        progress_at = coalesce(to_timestamp(c.progress_at), a.progress_at),
        heartbeat_at = greatest(to_timestamp(c.heartbeat_at), a.heartbeat_at)
    FROM unnest($1::text[], $2::int[], $3::float8[], $4::text[], $5::text[], $6::int[],
                $7::float8[], $8::text[], $9::float8[], $10::float8[])
         AS c(job_id, attempt, closed_at, outcome, error, pid, progress, progress_message, progress_at, heartbeat_at)
    WHERE a.job_id = c.job_id AND a.attempt = c.attempt
    RETURNING 1
),
opened AS (
    INSERT INTO attempts (job_id, attempt, started_at)
    SELECT job_id, attempt, to_timestamp(at)
    FROM unnest($11::text[], $12::int[], $13::float8[]) AS o(job_id, attempt, at)
    RETURNING 1
),
moved AS (
    UPDATE jobs j
    SET status = s.status::job_status,
        updated_at = to_timestamp(s.at),
        finished_at = CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled', 'upstream_failed')
                           THEN to_timestamp(s.at) END,
        terminal_status = CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled', 'upstream_failed')
                               THEN s.status::job_status END,
        error = s.error,
        result = coalesce(s.result::jsonb, j.result),
        next_run_at = to_timestamp(s.next_run_at),
        ready_at = CASE WHEN s.status = 'pending' THEN to_timestamp(s.at) ELSE j.ready_at END,
        attempts_charged = coalesce(s.charged, j.attempts_charged),
        attempt_count = coalesce(s.attempt, j.attempt_count),
        started_at = CASE WHEN s.started THEN to_timestamp(s.at) ELSE j.started_at END,
        dispatched_to = CASE WHEN s.started THEN s.dispatched_to ELSE j.dispatched_to END
    FROM unnest($14::text[], $15::text[], $16::float8[], $17::text[], $18::text[], $19::float8[], $20::int[],
                $21::int[], $22::bool[], $23::text[])
         AS s(job_id, status, at, error, result, next_run_at, charged, attempt, started, dispatched_to)
    WHERE j.job_id = s.job_id
    RETURNING j.job_id, j.type, j.payload::text AS payload, s.started
),
logged AS (
    INSERT INTO job_logs (job_id, attempt, at, level, event, message, data)
    SELECT l.job_id, l.attempt, to_timestamp(l.at), l.level, l.event, l.message, l.data::jsonb
    FROM unnest($24::text[], $25::int[], $26::float8[], $27::text[], $28::text[], $29::text[], $30::text[])
         AS l(job_id, attempt, at, level, event, message, data)
    RETURNING 1
),
evented AS (
    INSERT INTO job_events (seq, at, job_id, type, priority, status, event, attempt, error, progress, message)
    SELECT e.seq, to_timestamp(e.at), e.job_id, e.type, e.priority::job_priority, e.status::job_status, e.event,
           e.attempt, e.error, e.progress, e.message
    FROM unnest($31::bigint[], $32::float8[], $33::text[], $34::text[], $35::text[], $36::text[], $37::text[],
                $38::int[], $39::text[], $40::float8[], $41::text[])
         AS e(seq, at, job_id, type, priority, status, event, attempt, error, progress, message)
    RETURNING 1
)
SELECT job_id, type, payload FROM moved WHERE started;

-- name: insert_api_key
INSERT INTO api_keys (key_id, name, scopes, salt, hash, rate_limit_submit, rate_limit_requests)
VALUES ($1, $2, $3::text[], $4, $5, $6, $7)
RETURNING key_id, name, scopes, created_at, revoked_at, rate_limit_submit, rate_limit_requests;

-- name: list_api_keys
SELECT key_id, name, scopes, created_at, revoked_at, rate_limit_submit, rate_limit_requests
FROM api_keys
ORDER BY created_at, key_id;

-- name: find_api_key
-- The API's check of a presented key, at most once a second per key id (the API caches the answer).
SELECT key_id, scopes, salt, hash, revoked_at IS NOT NULL AS revoked, rate_limit_submit, rate_limit_requests
FROM api_keys
WHERE key_id = $1;

-- name: revoke_api_key
-- Revoking twice keeps the first revocation's time.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE key_id = $1
RETURNING key_id, name, scopes, created_at, revoked_at, rate_limit_submit, rate_limit_requests;

-- name: any_api_key
-- Revoked keys count too: see db/migrations/20261205000008_api_keys.sql.
SELECT EXISTS (SELECT 1 FROM api_keys);
