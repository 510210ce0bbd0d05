-- migrate:up

-- API keys (issue: authentication with scopes). A key is `tq_<key_id>_<secret>`; only a salted SHA-256
-- of the secret is stored, so a copy of this table lets nobody call the API. Revoking sets revoked_at
-- and keeps the row: the row still counts as "a key exists", so revoking the last key never reopens an
-- API that TASKQ_AUTH=auto closed.
CREATE TABLE api_keys (
    key_id text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{12}$'),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- the scopes the API knows; an empty key would be a key that can do nothing, surely a mistake
    scopes text[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['submit', 'read', 'admin']),
    salt bytea NOT NULL CHECK (octet_length(salt) = 16),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz CHECK (revoked_at >= created_at)
);

-- migrate:down

DROP TABLE api_keys;
