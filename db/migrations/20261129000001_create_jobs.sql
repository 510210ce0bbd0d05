-- migrate:up

-- The words of the API, enforced by the database as a safety net under the single-writer scheduler.
CREATE TYPE job_status AS ENUM (
    'blocked', 'pending', 'scheduled', 'running', 'succeeded', 'failed', 'cancelled', 'upstream_failed'
);
-- Declared from most to least urgent, so ORDER BY priority sorts critical first.
CREATE TYPE job_priority AS ENUM ('critical', 'high', 'normal', 'low');
CREATE TYPE attempt_outcome AS ENUM (
    'succeeded', 'failed', 'permanent_failure', 'timed_out', 'crashed', 'cancelled', 'interrupted',
    'memory_exceeded'
);

CREATE TABLE jobs (
    job_id                text PRIMARY KEY CHECK (job_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    -- Insertion order: FIFO tie-break within a priority and the key of keyset pagination.
    seq                   bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    type                  text NOT NULL,
    priority              job_priority NOT NULL,
    status                job_status NOT NULL,
    payload               jsonb NOT NULL DEFAULT '{}',
    cpu_units             integer NOT NULL CHECK (cpu_units >= 0),
    memory_mb             integer NOT NULL CHECK (memory_mb >= 0),
    -- As submitted, so GET needs one row; job_dependencies holds the same edges for graph queries.
    depends_on            text[] NOT NULL DEFAULT '{}',
    timeout_seconds       double precision CHECK (timeout_seconds > 0),
    max_attempts          integer NOT NULL CHECK (max_attempts >= 1),
    backoff_multiplier    double precision NOT NULL CHECK (backoff_multiplier >= 1),
    initial_delay_seconds double precision NOT NULL CHECK (initial_delay_seconds >= 0),
    max_delay_seconds     double precision NOT NULL CHECK (max_delay_seconds >= 0),
    jitter                double precision NOT NULL CHECK (jitter >= 0 AND jitter <= 1),
    run_at                timestamptz,
    -- When a scheduled job becomes pending: its run_at, or the end of a retry delay.
    next_run_at           timestamptz,
    -- When the job last became pending: the FIFO and aging clock.
    ready_at              timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    finished_at           timestamptz,
    attempt_count         integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    error                 text,
    result                jsonb,
    -- sha256 of the normalised submission: same job_id and same hash is a replay, another hash a conflict.
    request_hash          bytea NOT NULL,
    CONSTRAINT finished_iff_terminal CHECK (
        (finished_at IS NOT NULL) = (status IN ('succeeded', 'failed', 'cancelled', 'upstream_failed'))
    ),
    CONSTRAINT running_has_started CHECK (status <> 'running' OR started_at IS NOT NULL)
);

-- GET /jobs?status=...: keyset pages walk (status, seq) without sorting.
CREATE INDEX jobs_status_seq_idx ON jobs (status, seq);
-- GET /jobs?type=...
CREATE INDEX jobs_type_seq_idx ON jobs (type, seq);
-- GET /jobs?priority=...
CREATE INDEX jobs_priority_seq_idx ON jobs (priority, seq);
-- The scheduler's start-up load reads only live jobs; terminal ones, the vast majority at 10^7 rows,
-- are not in this index at all, so its size tracks the backlog, not the history.
CREATE INDEX jobs_live_idx ON jobs (seq) WHERE status IN ('blocked', 'pending', 'scheduled', 'running');

CREATE TABLE job_dependencies (
    job_id     text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    depends_on text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, depends_on),
    CHECK (job_id <> depends_on)
);
-- Children of a job (for re-driving a failed job's descendants and for explain).
CREATE INDEX job_dependencies_depends_on_idx ON job_dependencies (depends_on);

CREATE TABLE attempts (
    job_id      text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    attempt     integer NOT NULL CHECK (attempt >= 1),
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     attempt_outcome,
    error       text,
    worker_pid  integer,
    PRIMARY KEY (job_id, attempt),
    CONSTRAINT outcome_iff_finished CHECK ((outcome IS NULL) = (finished_at IS NULL))
);

CREATE TABLE job_logs (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id    text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    attempt   integer,
    at        timestamptz NOT NULL,
    level     text NOT NULL,
    event     text NOT NULL,
    message   text NOT NULL,
    data      jsonb
);
-- GET /jobs/{id}/logs pages through one job's lines in order.
CREATE INDEX job_logs_job_id_idx ON job_logs (job_id, id);

-- migrate:down
DROP TABLE job_logs;
DROP TABLE attempts;
DROP TABLE job_dependencies;
DROP TABLE jobs;
DROP TYPE attempt_outcome;
DROP TYPE job_priority;
DROP TYPE job_status;
