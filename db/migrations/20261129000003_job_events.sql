-- migrate:up

-- The status changes the WebSocket stream shows, kept for a bounded window so that a client that
-- reconnects with ?after=<seq> receives what it missed. The scheduler is the only writer and assigns
-- seq itself (gap-free, increasing); it prunes the oldest rows beyond the window. No foreign key to
-- jobs: the window is pruned independently of job retention.
CREATE TABLE job_events (
    seq      bigint PRIMARY KEY,
    at       timestamptz NOT NULL,
    job_id   text NOT NULL,
    type     text NOT NULL,
    priority job_priority NOT NULL,
    status   job_status NOT NULL,
    event    text NOT NULL,
    attempt  integer,
    error    text
);

-- migrate:down
DROP TABLE job_events;
