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
        run_at, next_run_at, ready_at, finished_at, terminal_status, error, request_hash, created_at, updated_at,
        schedule_id
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
           j.error, j.request_hash, now(), now(), j.schedule_id
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::text[],
        $9::float8[], $10::int[], $11::float8[], $12::float8[], $13::float8[], $14::float8[],
        $15::timestamptz[], $16::text[], $17::bytea[], $18::text[]
    ) WITH ORDINALITY AS j(job_id, type, priority, status, payload, cpu_units, memory_mb, depends_on,
           timeout_seconds, max_attempts, backoff_multiplier, initial_delay_seconds, max_delay_seconds, jitter,
           run_at, error, request_hash, schedule_id, ord)
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
        'outcome', a.outcome, 'error', a.error, 'worker_pid', a.worker_pid, 'node', a.node)
        ORDER BY a.attempt), '[]'::jsonb)
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

-- name: job_neighbours
-- The console's dependency graph of one job: its parents and its children with their statuses, at most
-- $2 of each (a fan-out can have thousands; the caller asks one more to know it cut). Parents come
-- through the primary key, children through job_dependencies_depends_on_idx.
(SELECT 'parent' AS relation, j.job_id, j.type, j.status::text AS status
 FROM job_dependencies d JOIN jobs j ON j.job_id = d.depends_on
 WHERE d.job_id = $1
 ORDER BY j.seq
 LIMIT $2)
UNION ALL
(SELECT 'child' AS relation, j.job_id, j.type, j.status::text AS status
 FROM job_dependencies d JOIN jobs j ON j.job_id = d.job_id
 WHERE d.depends_on = $1
 ORDER BY j.seq
 LIMIT $2);

-- name: recent_throughput
-- The console's overview: per minute over the last $1 minutes (every minute, zeros included, on the
-- database's clock), attempts started, jobs succeeded, jobs failed for good and attempts retried, from
-- the stream's kept events. That table holds only the newest 100,000-200,000 events, so this reads a
-- bounded window (no index on `at` is kept for it); on a node busier than that the oldest minutes are
-- partly pruned.
WITH counts AS (
    SELECT date_trunc('minute', at) AS m,
           count(*) FILTER (WHERE event = 'started') AS started,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE event = 'retry_scheduled') AS retried
    FROM job_events
    WHERE at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1)
    GROUP BY 1
)
SELECT extract(epoch FROM g.m)::float8 AS minute,
       coalesce(c.started, 0) AS started, coalesce(c.succeeded, 0) AS succeeded,
       coalesce(c.failed, 0) AS failed, coalesce(c.retried, 0) AS retried
FROM generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1), date_trunc('minute', now()),
                     interval '1 minute') AS g(m)
LEFT JOIN counts c USING (m)
ORDER BY g.m;

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
-- turn, its log lines and stream events. Each row is touched by one part only (the caller merges per job
-- and per attempt: PostgreSQL applies one update per row in a statement). Returns what the workers of started jobs need.
-- $44 is the leader's term in a cluster (NULL on a single node): `taskq_fence` raises, and so undoes the
-- whole statement, if another scheduler has taken the lease since. Its one-row branch of the UNION is
-- evaluated once per statement whatever the turn holds (a one-time filter), and returns no job.
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
    INSERT INTO attempts (job_id, attempt, started_at, node)
    SELECT job_id, attempt, to_timestamp(at), node
    FROM unnest($11::text[], $12::int[], $13::float8[], $14::text[]) AS o(job_id, attempt, at, node)
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
        dispatched_to = CASE WHEN s.started THEN s.dispatched_to ELSE j.dispatched_to END,
        node = CASE WHEN s.started THEN s.node ELSE j.node END
    FROM unnest($15::text[], $16::text[], $17::float8[], $18::text[], $19::text[], $20::float8[], $21::int[],
                $22::int[], $23::bool[], $24::text[], $25::text[])
         AS s(job_id, status, at, error, result, next_run_at, charged, attempt, started, dispatched_to, node)
    WHERE j.job_id = s.job_id
    RETURNING j.job_id, j.type, j.payload::text AS payload, s.started
),
logged AS (
    INSERT INTO job_logs (job_id, attempt, at, level, event, message, data)
    SELECT l.job_id, l.attempt, to_timestamp(l.at), l.level, l.event, l.message, l.data::jsonb
    FROM unnest($26::text[], $27::int[], $28::float8[], $29::text[], $30::text[], $31::text[], $32::text[])
         AS l(job_id, attempt, at, level, event, message, data)
    RETURNING 1
),
evented AS (
    INSERT INTO job_events (seq, at, job_id, type, priority, status, event, attempt, error, progress, message)
    SELECT e.seq, to_timestamp(e.at), e.job_id, e.type, e.priority::job_priority, e.status::job_status, e.event,
           e.attempt, e.error, e.progress, e.message
    FROM unnest($33::bigint[], $34::float8[], $35::text[], $36::text[], $37::text[], $38::text[], $39::text[],
                $40::int[], $41::text[], $42::float8[], $43::text[])
         AS e(seq, at, job_id, type, priority, status, event, attempt, error, progress, message)
    RETURNING 1
)
SELECT NULL::text AS job_id, NULL::text AS type, NULL::text AS payload
WHERE $44::bigint IS NOT NULL AND NOT taskq_fence($44::bigint)  -- a single node calls no function
UNION ALL
SELECT job_id, type, payload FROM moved WHERE started;

-- name: take_lease
-- A candidate takes the scheduler lease when it is free or has expired: the term grows by one. One
-- statement; the row lock orders it after any turn of the old leader still in flight (FOR SHARE).
UPDATE scheduler_lease
SET term = term + 1, holder = $1, address = $2, expires_at = now() + make_interval(secs => $3)
WHERE id = 1 AND (holder IS NULL OR expires_at < now())
RETURNING term;

-- name: renew_lease
UPDATE scheduler_lease
SET expires_at = now() + make_interval(secs => $3)
WHERE id = 1 AND term = $1 AND holder = $2
RETURNING term;

-- name: release_lease
-- A leader that stops (drain, SIGTERM) hands the lease over at once instead of letting it expire.
UPDATE scheduler_lease SET holder = NULL, expires_at = '-infinity'
WHERE id = 1 AND term = $1 AND holder = $2;

-- name: read_lease
SELECT term, holder, address, holder IS NOT NULL AND expires_at > now() AS valid
FROM scheduler_lease WHERE id = 1;

-- name: node_heartbeat
INSERT INTO cluster_nodes (name, clustered) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET clustered = excluded.clustered, last_seen = now();

-- name: other_live_nodes
-- Nodes other than $1 heard from within $2 seconds.
SELECT name, clustered FROM cluster_nodes
WHERE name <> $1 AND last_seen > now() - make_interval(secs => $2)
ORDER BY name;

-- name: remove_node
DELETE FROM cluster_nodes WHERE name = $1;

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

-- name: insert_schedule
-- A new schedule; an id that exists already inserts nothing (the API answers 409).
INSERT INTO schedules (schedule_id, cron, timezone, job, overlap, catch_up, paused)
VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
ON CONFLICT (schedule_id) DO NOTHING
RETURNING schedule_id, cron, timezone, job::text AS job, overlap, catch_up, paused, checked_through,
          last_fired_at, last_job_id, version, created_at, updated_at;

-- name: get_schedule
SELECT schedule_id, cron, timezone, job::text AS job, overlap, catch_up, paused, checked_through,
       last_fired_at, last_job_id, version, created_at, updated_at
FROM schedules
WHERE schedule_id = $1;

-- name: list_schedules
-- Every schedule, by id: the scheduler's load at start and after a change, and GET /schedules.
SELECT schedule_id, cron, timezone, job::text AS job, overlap, catch_up, paused, checked_through,
       last_fired_at, last_job_id, version, created_at, updated_at
FROM schedules
ORDER BY schedule_id;

-- name: update_schedule
-- A PATCH, merged by the API from the row it read at `version` $8; nothing when someone changed the row
-- since (the API reads and merges again). $9: the timing changed or the schedule resumed, so ticks from
-- before now are never caught up.
UPDATE schedules
SET cron = $2, timezone = $3, job = $4::jsonb, overlap = $5, catch_up = $6, paused = $7,
    checked_through = CASE WHEN $9 THEN greatest(checked_through, now()) ELSE checked_through END,
    version = version + 1, updated_at = now()
WHERE schedule_id = $1 AND version = $8
RETURNING schedule_id, cron, timezone, job::text AS job, overlap, catch_up, paused, checked_through,
          last_fired_at, last_job_id, version, created_at, updated_at;

-- name: delete_schedule
DELETE FROM schedules WHERE schedule_id = $1 RETURNING schedule_id;

-- name: advance_schedules
-- The scheduler's cron pass, first statement of its transaction: record how far each schedule is
-- decided and its last fired job, for the schedules still at the version the pass planned with and not
-- paused. The row locks taken here hold off a concurrent PATCH until the jobs are inserted, and the ids
-- returned are the schedules whose jobs may be inserted.
UPDATE schedules s
SET checked_through = greatest(s.checked_through, to_timestamp(a.checked_through)),
    last_fired_at = coalesce(to_timestamp(a.fired_tick), s.last_fired_at),
    last_job_id = coalesce(a.job_id, s.last_job_id)
FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::text[])
     AS a(schedule_id, version, checked_through, fired_tick, job_id)
WHERE s.schedule_id = a.schedule_id AND s.version = a.version AND NOT s.paused
RETURNING s.schedule_id;

-- name: upsert_type_control
-- PATCH /types/{type}: a field not given ($3, $5, $7 false) keeps its stored value.
INSERT INTO type_controls AS t (type, paused, max_running, max_starts_per_second)
VALUES ($1, coalesce($2, false), $4, $6)
ON CONFLICT (type) DO UPDATE
SET paused = coalesce($2, t.paused),
    max_running = CASE WHEN $3 THEN $4 ELSE t.max_running END,
    max_starts_per_second = CASE WHEN $5 THEN $6 ELSE t.max_starts_per_second END,
    updated_at = now()
RETURNING type, paused, max_running, max_starts_per_second, updated_at;

-- name: list_type_controls
SELECT type, paused, max_running, max_starts_per_second, updated_at FROM type_controls ORDER BY type;

-- name: live_counts_by_type
-- GET /types: waiting and running jobs per type and status, from the live set (jobs_live_idx).
SELECT type, status::text AS status, count(*) AS n
FROM jobs
WHERE finished_at IS NULL
GROUP BY type, status;
