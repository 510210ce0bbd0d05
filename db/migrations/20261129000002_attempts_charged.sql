-- migrate:up

-- Attempts that count against max_attempts. It differs from attempt_count (the number of the last
-- attempt) when a drain interrupted an attempt (not charged) or the job was re-driven from the dead
-- letter queue (fresh attempts). The scheduler restores it at start-up instead of recounting attempts.
ALTER TABLE jobs ADD COLUMN attempts_charged integer NOT NULL DEFAULT 0 CHECK (attempts_charged >= 0);

-- migrate:down
ALTER TABLE jobs DROP COLUMN attempts_charged;
