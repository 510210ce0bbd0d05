-- migrate:up

-- The scheduler leader's lease: one row. `term` (the epoch) only grows; taking the lease is one UPDATE
-- that raises it, and every turn of the leader checks (FOR SHARE) that the row still carries its term,
-- so a deposed leader that wakes up cannot change a job.
CREATE TABLE scheduler_lease (
    id smallint PRIMARY KEY CHECK (id = 1),
    term bigint NOT NULL CHECK (term >= 0),
    holder text,
    address text,
    expires_at timestamptz NOT NULL
);
INSERT INTO scheduler_lease (id, term, holder, address, expires_at) VALUES (1, 0, NULL, NULL, '-infinity');

-- The fence of a leader's turn: called once by apply_turn. NULL (a single node, which holds the advisory
-- lock instead) passes. Otherwise the lease row must still carry the caller's term; the row is locked
-- FOR SHARE until the turn commits, so a takeover (an UPDATE of the row) waits for the turn, and a turn
-- after a takeover raises and writes nothing. PL/pgSQL takes a fresh snapshot for the PERFORM, so a
-- takeover committed while the turn's statement started is seen.
CREATE FUNCTION taskq_fence(expected bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF expected IS NULL THEN
        RETURN true;
    END IF;
    PERFORM 1 FROM scheduler_lease WHERE id = 1 AND term = expected FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scheduler term % was fenced off: another scheduler took the lease', expected
            USING ERRCODE = 'TQF01';
    END IF;
    RETURN true;
END
$$;

-- Every node that runs on this database, renewed every second by its scheduler process: a single node
-- (no cluster secret) refuses to start beside another live node, and /stats can name the nodes.
CREATE TABLE cluster_nodes (
    name text PRIMARY KEY,
    clustered boolean NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);

-- Where each attempt ran (GET /jobs/{id} attempts[].node), and a running job's node, so that a new
-- leader rebuilds each node's ledger.
ALTER TABLE attempts ADD COLUMN node text;
ALTER TABLE jobs ADD COLUMN node text;

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
       dispatched_to,
       node
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
       finished_at IS NULL AS live,
       dispatched_to
FROM jobs;
ALTER TABLE jobs DROP COLUMN node;
ALTER TABLE attempts DROP COLUMN node;
DROP TABLE cluster_nodes;
DROP FUNCTION taskq_fence(bigint);
DROP TABLE scheduler_lease;
