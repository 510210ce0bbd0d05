-- migrate:up

-- A key may carry its own rate limits (NULL: the node's TASKQ_RATE_LIMIT_SUBMIT / _REQUESTS). The text
-- is the setting's own form, `<amount>/<s|m|h>[:<burst>]`, checked here as well as by the API and CLI.
ALTER TABLE api_keys
    ADD COLUMN rate_limit_submit text CHECK (rate_limit_submit ~ '^[0-9]+(\.[0-9]+)?/[smh](:[0-9]+)?$'),
    ADD COLUMN rate_limit_requests text CHECK (rate_limit_requests ~ '^[0-9]+(\.[0-9]+)?/[smh](:[0-9]+)?$');

-- migrate:down

ALTER TABLE api_keys DROP COLUMN rate_limit_submit, DROP COLUMN rate_limit_requests;
