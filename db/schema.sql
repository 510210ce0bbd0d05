SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: attempt_outcome; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.attempt_outcome AS ENUM (
    'succeeded',
    'failed',
    'permanent_failure',
    'timed_out',
    'crashed',
    'cancelled',
    'interrupted',
    'memory_exceeded'
);


--
-- Name: job_priority; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.job_priority AS ENUM (
    'critical',
    'high',
    'normal',
    'low'
);


--
-- Name: job_status; Type: TYPE; Schema: public; Owner: -
--

CREATE TYPE public.job_status AS ENUM (
    'blocked',
    'pending',
    'scheduled',
    'running',
    'succeeded',
    'failed',
    'cancelled',
    'upstream_failed'
);


--
-- Name: submission_log_lines(text, public.job_status, text, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.submission_log_lines(text, public.job_status, text, timestamp with time zone) RETURNS TABLE(job_id text, at timestamp with time zone, level text, event text, message text, n integer)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $_$
    -- $1 job_id, $2 status as committed, $3 its error (upstream_failed), $4 created_at
    SELECT $1, $4, 'info', 'submitted', 'submitted as ' || $2::text, 1
    UNION ALL
    SELECT $1, $4, 'error', 'upstream_failed', 'upstream_failed: ' || $3, 2
    WHERE $2 = 'upstream_failed'
    UNION ALL
    SELECT $1, $4, 'info', $2::text, $2::text || ' at submission', 2
    WHERE $2 IN ('blocked', 'scheduled')
$_$;


--
-- Name: taskq_fence(bigint); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.taskq_fence(expected bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
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


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: api_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.api_keys (
    key_id text NOT NULL,
    name text NOT NULL,
    scopes text[] NOT NULL,
    salt bytea NOT NULL,
    hash bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone,
    rate_limit_submit text,
    rate_limit_requests text,
    CONSTRAINT api_keys_check CHECK ((revoked_at >= created_at)),
    CONSTRAINT api_keys_hash_check CHECK ((octet_length(hash) = 32)),
    CONSTRAINT api_keys_key_id_check CHECK ((key_id ~ '^[0-9a-f]{12}$'::text)),
    CONSTRAINT api_keys_name_check CHECK (((char_length(name) >= 1) AND (char_length(name) <= 100))),
    CONSTRAINT api_keys_rate_limit_requests_check CHECK ((rate_limit_requests ~ '^[0-9]+(\.[0-9]+)?/[smh](:[0-9]+)?$'::text)),
    CONSTRAINT api_keys_rate_limit_submit_check CHECK ((rate_limit_submit ~ '^[0-9]+(\.[0-9]+)?/[smh](:[0-9]+)?$'::text)),
    CONSTRAINT api_keys_salt_check CHECK ((octet_length(salt) = 16)),
    CONSTRAINT api_keys_scopes_check CHECK (((cardinality(scopes) > 0) AND (scopes <@ ARRAY['submit'::text, 'read'::text, 'admin'::text])))
);


--
-- Name: attempts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.attempts (
    job_id text NOT NULL,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone,
    outcome public.attempt_outcome,
    error text,
    worker_pid integer,
    node text,
    progress double precision,
    progress_message text,
    progress_at timestamp with time zone,
    heartbeat_at timestamp with time zone,
    CONSTRAINT attempts_attempt_check CHECK ((attempt >= 1)),
    CONSTRAINT attempts_progress_check CHECK (((progress >= (0)::double precision) AND (progress <= (1)::double precision))),
    CONSTRAINT outcome_iff_finished CHECK (((outcome IS NULL) = (finished_at IS NULL)))
)
WITH (fillfactor='80');


--
-- Name: cluster_nodes; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.cluster_nodes (
    name text NOT NULL,
    clustered boolean NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: job_dependencies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_dependencies (
    job_id text NOT NULL,
    depends_on text NOT NULL,
    CONSTRAINT job_dependencies_check CHECK ((job_id <> depends_on))
);


--
-- Name: job_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_events (
    seq bigint NOT NULL,
    at timestamp with time zone NOT NULL,
    job_id text NOT NULL,
    type text NOT NULL,
    priority public.job_priority NOT NULL,
    status public.job_status NOT NULL,
    event text NOT NULL,
    attempt integer,
    error text,
    progress double precision,
    message text
);


--
-- Name: job_logs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_logs (
    id bigint NOT NULL,
    job_id text NOT NULL,
    attempt integer,
    at timestamp with time zone NOT NULL,
    level text NOT NULL,
    event text NOT NULL,
    message text NOT NULL,
    data jsonb
);


--
-- Name: job_logs_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.job_logs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.job_logs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.jobs (
    job_id text NOT NULL,
    seq bigint NOT NULL,
    type text NOT NULL,
    priority public.job_priority NOT NULL,
    status public.job_status NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    cpu_units integer NOT NULL,
    memory_mb integer NOT NULL,
    depends_on text[] DEFAULT '{}'::text[] NOT NULL,
    timeout_seconds double precision,
    max_attempts integer NOT NULL,
    backoff_multiplier double precision NOT NULL,
    initial_delay_seconds double precision NOT NULL,
    max_delay_seconds double precision NOT NULL,
    jitter double precision NOT NULL,
    run_at timestamp with time zone,
    next_run_at timestamp with time zone,
    ready_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    attempt_count integer DEFAULT 0 NOT NULL,
    error text,
    result jsonb,
    request_hash bytea NOT NULL,
    attempts_charged integer DEFAULT 0 NOT NULL,
    terminal_status public.job_status,
    dispatched_to text,
    node text,
    schedule_id text,
    CONSTRAINT finished_iff_terminal CHECK (((finished_at IS NOT NULL) = (status = ANY (ARRAY['succeeded'::public.job_status, 'failed'::public.job_status, 'cancelled'::public.job_status, 'upstream_failed'::public.job_status])))),
    CONSTRAINT jobs_attempt_count_check CHECK ((attempt_count >= 0)),
    CONSTRAINT jobs_attempts_charged_check CHECK ((attempts_charged >= 0)),
    CONSTRAINT jobs_backoff_multiplier_check CHECK ((backoff_multiplier >= (1)::double precision)),
    CONSTRAINT jobs_cpu_units_check CHECK ((cpu_units >= 0)),
    CONSTRAINT jobs_initial_delay_seconds_check CHECK ((initial_delay_seconds >= (0)::double precision)),
    CONSTRAINT jobs_jitter_check CHECK (((jitter >= (0)::double precision) AND (jitter <= (1)::double precision))),
    CONSTRAINT jobs_job_id_check CHECK (((job_id ~ '^[A-Za-z0-9._:-]+$'::text) AND (length(job_id) <= 128))),
    CONSTRAINT jobs_max_attempts_check CHECK ((max_attempts >= 1)),
    CONSTRAINT jobs_max_delay_seconds_check CHECK ((max_delay_seconds >= (0)::double precision)),
    CONSTRAINT jobs_memory_mb_check CHECK ((memory_mb >= 0)),
    CONSTRAINT jobs_timeout_seconds_check CHECK ((timeout_seconds > (0)::double precision)),
    CONSTRAINT running_has_started CHECK (((status <> 'running'::public.job_status) OR (started_at IS NOT NULL))),
    CONSTRAINT terminal_status_mirrors_status CHECK ((((finished_at IS NULL) AND (terminal_status IS NULL)) OR (terminal_status = status)))
)
WITH (fillfactor='80');


--
-- Name: jobs_seq_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.jobs ALTER COLUMN seq ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.jobs_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: scheduler_jobs; Type: VIEW; Schema: public; Owner: -
--

CREATE VIEW public.scheduler_jobs AS
 SELECT job_id,
    type,
    seq,
    priority,
    status,
    cpu_units,
    memory_mb,
    depends_on,
    timeout_seconds,
    max_attempts,
    backoff_multiplier,
    initial_delay_seconds,
    max_delay_seconds,
    jitter,
    attempt_count,
    attempts_charged AS charged,
    (EXTRACT(epoch FROM created_at))::double precision AS created_at,
    (EXTRACT(epoch FROM run_at))::double precision AS run_at,
    (EXTRACT(epoch FROM next_run_at))::double precision AS next_run_at,
    (EXTRACT(epoch FROM ready_at))::double precision AS ready_at,
    (EXTRACT(epoch FROM started_at))::double precision AS started_at,
    (finished_at IS NULL) AS live,
    dispatched_to,
    node
   FROM public.jobs;


--
-- Name: scheduler_lease; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.scheduler_lease (
    id smallint NOT NULL,
    term bigint NOT NULL,
    holder text,
    address text,
    expires_at timestamp with time zone NOT NULL,
    CONSTRAINT scheduler_lease_id_check CHECK ((id = 1)),
    CONSTRAINT scheduler_lease_term_check CHECK ((term >= 0))
);


--
-- Name: schedules; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schedules (
    schedule_id text NOT NULL,
    cron text NOT NULL,
    timezone text NOT NULL,
    job jsonb NOT NULL,
    overlap text NOT NULL,
    catch_up text NOT NULL,
    paused boolean DEFAULT false NOT NULL,
    checked_through timestamp with time zone DEFAULT now() NOT NULL,
    last_fired_at timestamp with time zone,
    last_job_id text,
    version bigint DEFAULT 1 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT schedules_catch_up_check CHECK ((catch_up = ANY (ARRAY['none'::text, 'one'::text, 'all'::text]))),
    CONSTRAINT schedules_overlap_check CHECK ((overlap = ANY (ARRAY['skip'::text, 'allow'::text]))),
    CONSTRAINT schedules_schedule_id_check CHECK (((schedule_id ~ '^[A-Za-z0-9._-]+$'::text) AND (length(schedule_id) <= 100)))
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version character varying NOT NULL
);


--
-- Name: type_controls; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.type_controls (
    type text NOT NULL,
    paused boolean DEFAULT false NOT NULL,
    max_running integer,
    max_starts_per_second double precision,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT type_controls_max_running_check CHECK ((max_running >= 1)),
    CONSTRAINT type_controls_max_starts_per_second_check CHECK ((max_starts_per_second > (0)::double precision)),
    CONSTRAINT type_controls_type_check CHECK (((length(type) >= 1) AND (length(type) <= 128)))
);


--
-- Name: api_keys api_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (key_id);


--
-- Name: attempts attempts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.attempts
    ADD CONSTRAINT attempts_pkey PRIMARY KEY (job_id, attempt);


--
-- Name: cluster_nodes cluster_nodes_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.cluster_nodes
    ADD CONSTRAINT cluster_nodes_pkey PRIMARY KEY (name);


--
-- Name: job_dependencies job_dependencies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_dependencies
    ADD CONSTRAINT job_dependencies_pkey PRIMARY KEY (job_id, depends_on);


--
-- Name: job_events job_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_events
    ADD CONSTRAINT job_events_pkey PRIMARY KEY (seq);


--
-- Name: job_logs job_logs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_logs
    ADD CONSTRAINT job_logs_pkey PRIMARY KEY (id);


--
-- Name: jobs jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (job_id);


--
-- Name: jobs jobs_seq_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_seq_key UNIQUE (seq);


--
-- Name: scheduler_lease scheduler_lease_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.scheduler_lease
    ADD CONSTRAINT scheduler_lease_pkey PRIMARY KEY (id);


--
-- Name: schedules schedules_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schedules
    ADD CONSTRAINT schedules_pkey PRIMARY KEY (schedule_id);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: type_controls type_controls_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.type_controls
    ADD CONSTRAINT type_controls_pkey PRIMARY KEY (type);


--
-- Name: job_dependencies_depends_on_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX job_dependencies_depends_on_idx ON public.job_dependencies USING btree (depends_on);


--
-- Name: job_logs_job_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX job_logs_job_id_idx ON public.job_logs USING btree (job_id, id);


--
-- Name: jobs_live_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_live_idx ON public.jobs USING btree (seq) WHERE (finished_at IS NULL);


--
-- Name: jobs_priority_seq_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_priority_seq_idx ON public.jobs USING btree (priority, seq);


--
-- Name: jobs_schedule_seq_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_schedule_seq_idx ON public.jobs USING btree (schedule_id, seq) WHERE (schedule_id IS NOT NULL);


--
-- Name: jobs_terminal_status_seq_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_terminal_status_seq_idx ON public.jobs USING btree (terminal_status, seq) WHERE (terminal_status IS NOT NULL);


--
-- Name: jobs_type_seq_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX jobs_type_seq_idx ON public.jobs USING btree (type, seq);


--
-- Name: job_dependencies job_dependencies_depends_on_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_dependencies
    ADD CONSTRAINT job_dependencies_depends_on_fkey FOREIGN KEY (depends_on) REFERENCES public.jobs(job_id) ON DELETE CASCADE;


--
-- Name: job_dependencies job_dependencies_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_dependencies
    ADD CONSTRAINT job_dependencies_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.jobs(job_id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--


--
-- Dbmate schema migrations
--

INSERT INTO public.schema_migrations (version) VALUES
    ('20261129000001'),
    ('20261129000002'),
    ('20261129000003'),
    ('20261129000004'),
    ('20261129000005'),
    ('20261129000006'),
    ('20261204000007'),
    ('20261205000008'),
    ('20261205000009'),
    ('20261205000010'),
    ('20261206000001'),
    ('20261206000110'),
    ('20261206000210');
