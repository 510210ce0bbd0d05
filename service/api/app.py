"""The HTTP API: routes, and the conversion of database rows into response bodies."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Litestar, Request, Response, get, patch, post
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, HTTPException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi import OpenAPIConfig
from litestar.params import Parameter
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

from service import handlers
from service.api import problems
from service.api.auth import KeyRing
from service.api.keys import delete_key, list_keys, post_key
from service.api.scheduler_link import SchedulerLink
from service.api.schemas import (
    JOB_ID_PATTERN,
    AttemptView,
    BatchAccepted,
    BatchSubmission,
    JobPage,
    JobSubmission,
    JobView,
    LogLine,
    ResourceRequirements,
    RetryConfig,
    Stats,
    check,
    decode_batch,
    decode_submission,
    name_job,
    require_json,
    validate,
)
from service.api.schemas import Accepted as AcceptedView
from service.api.stream import EventHub, job_stream
from service.api.submit import Accepted, SubmitBatcher, new_job_ids, timestamp
from service.dag import find_cycle, parents_first
from service.errors import (
    DependencyCycle,
    InvalidQuery,
    InvalidRequest,
    JobNotCancellable,
    JobNotFound,
    JobNotRetryable,
    ServiceUnavailable,
    TaskqError,
    TooManyRequests,
)
from service.model import Priority, Resources, Status
from service.protocol import (
    CancelRequest,
    ExplainQuery,
    HealthQuery,
    MetricsQuery,
    PositionQuery,
    RedriveRequest,
    StatsQuery,
)
from service.settings import Settings
from service.store import gateway
from service.telemetry import Telemetry

log = logging.getLogger("taskq.api")

_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
_decode_attempts = msgspec.json.Decoder(list[dict[str, Any]]).decode


# ------------------------------------------------------------------------------------------------- views


def job_view(record: gateway.JobRecord, *, position: int | None = None) -> JobView:
    attempt_list = _decode_attempts(record.attempts)
    return JobView(
        job_id=record.job_id,
        type=record.type,
        priority=record.priority,
        status=record.status,
        payload=_json(record.payload) or {},
        resource_requirements=ResourceRequirements(record.cpu_units, record.memory_mb),
        depends_on=list(record.depends_on),
        retry_config=RetryConfig(
            record.max_attempts,
            record.backoff_multiplier,
            record.initial_delay_seconds,
            record.max_delay_seconds,
            record.jitter,
        ),
        timeout_seconds=record.timeout_seconds,
        run_at=timestamp(record.run_at),
        next_run_at=timestamp(record.next_run_at),
        created_at=timestamp(record.created_at) or "",
        started_at=timestamp(record.started_at),
        finished_at=timestamp(record.finished_at),
        attempt_count=record.attempt_count,
        error=record.error,
        result=_json(record.result),
        position_in_queue=position,
        attempts=[
            AttemptView(
                attempt=a["attempt"],
                started_at=_iso(a.get("started_at")),
                finished_at=_iso(a.get("finished_at")),
                outcome=a.get("outcome"),
                error=a.get("error"),
                worker_pid=a.get("worker_pid"),
            )
            for a in attempt_list
        ],
    )


def _json(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, str) else value


def _iso(value: str | None) -> str | None:
    """jsonb renders timestamptz as '2024-01-15T10:00:00.123+00:00'; the API says '...Z'."""
    if value is None:
        return None
    from datetime import datetime

    return timestamp(datetime.fromisoformat(value))


# ------------------------------------------------------------------------------------------------ routes


def _pool(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.pool
    return pool


async def _positions(state: State, job_ids: list[str]) -> dict[str, int]:
    if not job_ids:
        return {}
    link: SchedulerLink = state.link
    try:
        reply = await link.request(lambda rid: PositionQuery(rid, job_ids), timeout=1.0)
    except TaskqError:
        return {}
    return reply.positions


def _refuse_while_draining(state: State) -> None:
    if state.draining:
        raise ServiceUnavailable("the service is shutting down and accepts no new jobs; retry shortly")


async def _load_job(state: State, job_id: str) -> JobView:
    record = await gateway.get_job(_pool(state), job_id)
    if record is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    position = None
    if record.status == Status.PENDING.value:
        position = (await _positions(state, [job_id])).get(job_id)
    return job_view(record, position=position)


@post("/jobs", status_code=201, summary="Submit a job", tags=["jobs"])
async def submit_job(request: Request[Any, Any, Any], state: State) -> Response[JobView]:
    """Commits the job, then schedules it. Same job_id and body again: 200 with the existing job."""
    # Served by `fast_submit` in front of Litestar; this handler describes the route in the OpenAPI
    # document and answers if the app runs without the fast path.
    _refuse_while_draining(state)
    require_json(request.headers.get("content-type"))
    status, view = await submit_one(state, await request.body(), request.headers.get("idempotency-key"))
    return Response(view, status_code=status)


async def submit_one(state: State, body: bytes, idempotency_key: str | None) -> tuple[int, JobView]:
    """POST /jobs after the draining check: the status code and the job."""
    submission = decode_submission(body)
    if idempotency_key is not None:
        if submission.job_id is None:
            if not _JOB_ID.match(idempotency_key):
                raise InvalidRequest.field("Idempotency-Key", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
            submission = msgspec.structs.replace(submission, job_id=idempotency_key)
        elif idempotency_key != submission.job_id:
            raise InvalidRequest.field("job_id", "differs from the Idempotency-Key header")
    settings: Settings = state.settings
    validate(submission, capacity=state.capacity, known_types=handlers.known_types())
    _refuse_beyond_live_limit(state, 1)
    batcher: SubmitBatcher = state.batcher
    accepted = await batcher.submit(submission)
    if accepted.created:
        state.telemetry.add("taskq_jobs_submitted", type=submission.type, priority=submission.priority.value)
        if accepted.status not in _TERMINAL_VALUES:
            # Everything is known without reading the row back: one query less per submission.
            return 201, created_view(submission, accepted, settings.default_timeout_seconds)
    view = await _load_job(state, accepted.job_id)
    return 201 if accepted.created else 200, view


def _refuse_beyond_live_limit(state: State, adding: int) -> None:
    """TASKQ_MAX_LIVE_JOBS: the scheduler holds every waiting or running job in memory, so their number
    is bounded. Checked against the scheduler's count as of its last word (each turn's events carry it),
    so submissions in flight at the same moment can pass it by what they hold; a replay of an existing
    job is refused too while the queue is full, and gets its 200 once there is room."""
    settings: Settings = state.settings
    link: SchedulerLink = state.link
    if link.live_jobs + adding > settings.max_live_jobs:
        message = f"{link.live_jobs} jobs are waiting or running; TASKQ_MAX_LIVE_JOBS is {settings.max_live_jobs}"
        raise TooManyRequests(
            f"the queue is full: {message}; retry when jobs have finished",
            retry_after_seconds=1,
            errors=[{"field": "TASKQ_MAX_LIVE_JOBS", "message": message}],
        )


_TERMINAL_VALUES = frozenset(s.value for s in Status if s.terminal)
_JOB_ID = re.compile(JOB_ID_PATTERN)


def _require_job_id(job_id: str) -> None:
    """An id outside the job_id pattern names no job; answering 404 here also keeps bytes PostgreSQL
    rejects (a NUL) away from the database, where they would fail the query with a 500."""
    if not _JOB_ID.match(job_id):
        raise JobNotFound(f"no job has id {job_id!r}")


def created_view(submission: JobSubmission, accepted: Accepted, default_timeout: float) -> JobView:
    """The job as its submission and the scheduler's answer describe it, equal to what a GET returns."""
    running = accepted.started_at is not None
    run_at = timestamp(submission.run_at) if submission.run_at is not None else None
    return JobView(
        job_id=accepted.job_id,
        type=submission.type,
        priority=submission.priority.value,
        status=accepted.status,
        payload=submission.payload,
        resource_requirements=submission.resource_requirements,
        depends_on=list(submission.depends_on),
        retry_config=submission.retry_config,
        timeout_seconds=submission.timeout_seconds if submission.timeout_seconds is not None else default_timeout,
        run_at=run_at,
        next_run_at=run_at if accepted.status == Status.SCHEDULED.value else None,
        created_at=timestamp(accepted.created_at) or "",
        started_at=timestamp(accepted.started_at),
        finished_at=None,
        attempt_count=1 if running else 0,
        error=None,
        result=None,
        position_in_queue=accepted.position if accepted.status == Status.PENDING.value else None,
        attempts=[AttemptView(1, timestamp(accepted.started_at), None, None, None, None)] if running else [],
    )


@post("/jobs/batch", status_code=201, summary="Submit a batch of jobs, all or nothing", tags=["jobs"])
async def submit_batch(request: Request[Any, Any, Any], state: State) -> Response[BatchAccepted]:
    """Jobs may depend on each other in any order; a cycle is rejected with its path, and nothing is created."""
    # Served by `fast_submit`, as POST /jobs is.
    _refuse_while_draining(state)
    require_json(request.headers.get("content-type"))
    status, answer = await submit_many(state, await request.body())
    return Response(answer, status_code=status)


async def submit_many(state: State, body: bytes) -> tuple[int, BatchAccepted]:
    """POST /jobs/batch after the draining check: the status code and the answer. The per-job work here
    is kept to a few µs: the graph checks run only when some job has dependencies, a job's field prefix
    (`jobs.3.`) is only built for a reject, and created jobs are answered from the batcher's outcome."""
    jobs = decode_batch(body).jobs
    capacity: Resources = state.capacity
    known = handlers.known_types()
    fresh = iter(new_job_ids(sum(1 for s in jobs if s.job_id is None)))
    ids: dict[str, int] = {}
    submissions: list[JobSubmission] = []
    dependent = False
    for index, submission in enumerate(jobs):
        try:
            check(submission, capacity, known)
        except InvalidRequest as exc:
            name_job(exc, f"jobs.{index}.")
            raise
        job_id = submission.job_id
        if job_id is None:
            job_id = next(fresh)
            submission = msgspec.structs.replace(submission, job_id=job_id)
        elif job_id in ids:
            raise InvalidRequest.field(f"jobs.{index}.job_id", f"repeats jobs.{ids[job_id]}.job_id")
        ids[job_id] = index
        submissions.append(submission)
        if submission.depends_on:
            dependent = True
    ordered = submissions
    if dependent:
        edges = {s.job_id: list(s.depends_on) for s in submissions if s.job_id is not None}
        cycle = find_cycle(edges)
        if cycle is not None:
            path = " -> ".join(cycle)
            raise DependencyCycle(
                f"depends_on: the batch's dependencies form a cycle: {path}; nothing was created",
                errors=[{"field": f"jobs.{ids[cycle[0]]}.depends_on", "message": f"cycle: {path}"}],
            )
        ordered = [submissions[ids[job_id]] for job_id in parents_first(list(edges), edges)]
    _refuse_beyond_live_limit(state, len(ordered))
    batcher: SubmitBatcher = state.batcher
    accepted = await batcher.submit_batch(ordered)
    by_id = {a.job_id: a for a in accepted}
    answers = []
    created: Counter[tuple[str, str]] = Counter()
    created_at: dict[float, str] = {}  # a batch shares one created_at: format it once
    for submission in submissions:
        assert submission.job_id is not None
        outcome = by_id[submission.job_id]
        if outcome.created:
            priority = submission.priority.value
            if (at := created_at.get(outcome.created_at)) is None:
                at = created_at[outcome.created_at] = timestamp(outcome.created_at) or ""
            answers.append(AcceptedView(outcome.job_id, outcome.status, at, priority, outcome.position))
            created[submission.type, priority] += 1
        else:
            view = await _load_job(state, outcome.job_id)
            answers.append(
                AcceptedView(view.job_id, view.status, view.created_at, view.priority, view.position_in_queue)
            )
    for (job_type, priority), n in created.items():  # one measurement per kind, not per job
        state.telemetry.add("taskq_jobs_submitted", n, type=job_type, priority=priority)
    return 201 if created else 200, BatchAccepted(answers)


@get("/jobs/{job_id:str}/explain", summary="Why a job is not running yet", tags=["jobs"])
async def explain_job(job_id: str, state: State) -> dict[str, Any]:
    """The scheduler's own view: open dependencies, resource shortfall, reservation, priority, retry time."""
    _require_job_id(job_id)
    record = await gateway.get_job(_pool(state), job_id)
    if record is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    if not Status(record.status).terminal:
        link: SchedulerLink = state.link
        reply = await link.request(lambda rid: ExplainQuery(rid, job_id))
        if reply.explanation is not None:
            return {"job_id": job_id, **_with_timestamps(reply.explanation)}
        record = await gateway.get_job(_pool(state), job_id)  # it finished between the two reads
        assert record is not None
    error = f" ({record.error})" if record.error else ""
    return {"job_id": job_id, "status": record.status, "reason": f"finished: {record.status}{error}"}


def _with_timestamps(explanation: dict[str, Any]) -> dict[str, Any]:
    result = dict(explanation)
    for key in ("next_run_at", "started_at", "deadline"):
        if result.get(key) is not None:
            result[key] = timestamp(result[key])
    reservation = result.get("reservation")
    if reservation is not None and reservation.get("until") is not None:
        result["reservation"] = {**reservation, "until": timestamp(reservation["until"])}
    return result


@get("/jobs/{job_id:str}", summary="Get a job with its attempts", tags=["jobs"])
async def get_job(job_id: str, state: State) -> JobView:
    _require_job_id(job_id)
    return await _load_job(state, job_id)


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, seq = text.split(":", 1)
        if version != "v1" or not seq.isdigit():
            raise ValueError
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery.field("cursor", "is not a cursor this service issued") from None


def _check_type_filter(job_type: str | None) -> None:
    """PostgreSQL cannot compare text holding NUL: such a filter is the client's error, not a 500."""
    if job_type is not None and "\x00" in job_type:
        raise InvalidQuery.field("type", "must not contain the NUL character")


@get("/jobs", summary="List jobs, newest first, with keyset pagination", tags=["jobs"])
async def list_jobs(
    state: State,
    status: str | None = None,
    type: str | None = None,
    priority: str | None = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> JobPage:
    _check_type_filter(type)
    if status is not None and status not in Status.__members__.values():
        raise InvalidQuery.field("status", f"must be one of: {', '.join(s.value for s in Status)}")
    if priority is not None and priority not in Priority.__members__.values():
        raise InvalidQuery.field("priority", f"must be one of: {', '.join(p.value for p in Priority)}")
    before = _decode_cursor(cursor) if cursor else None
    records = await gateway.list_jobs(
        _pool(state), status=status, type=type, priority=priority, before_seq=before, limit=limit + 1
    )
    page, more = records[:limit], len(records) > limit
    positions = await _positions(state, [r.job_id for r in page if r.status == Status.PENDING.value])
    return JobPage(
        items=[job_view(r, position=positions.get(r.job_id)) for r in page],
        next_cursor=_encode_cursor(page[-1].seq) if more else None,
    )


@patch("/jobs/{job_id:str}/cancel", summary="Cancel a job", tags=["jobs"])
async def cancel_job(job_id: str, state: State) -> JobView:
    _require_job_id(job_id)
    link: SchedulerLink = state.link
    record = await gateway.get_job(_pool(state), job_id)
    if record is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    if Status(record.status).terminal:
        raise JobNotCancellable(f"job {job_id} is already {record.status}")
    reply = await link.request(lambda rid: CancelRequest(rid, job_id))
    view = await _load_job(state, job_id)
    if reply.cancel == "not_waiting" and Status(view.status).terminal and view.status != Status.CANCELLED.value:
        raise JobNotCancellable(f"job {job_id} is already {view.status}")
    view.cancel_requested = reply.cancel == "cancel_requested"
    return view


@get("/dlq", summary="The dead letter queue: failed jobs, newest first", tags=["dead letter queue"])
async def dead_letters(
    state: State,
    type: str | None = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> JobPage:
    """Jobs that used up their attempts or failed permanently, with their last error. Re-drive one with
    POST /jobs/{job_id}/retry."""
    _check_type_filter(type)
    before = _decode_cursor(cursor) if cursor else None
    records = await gateway.list_jobs(
        _pool(state), status=Status.FAILED.value, type=type, priority=None, before_seq=before, limit=limit + 1
    )
    page, more = records[:limit], len(records) > limit
    return JobPage(items=[job_view(r) for r in page], next_cursor=_encode_cursor(page[-1].seq) if more else None)


@post("/jobs/{job_id:str}/retry", status_code=200, summary="Re-drive a failed job", tags=["dead letter queue"])
async def retry_job(job_id: str, state: State) -> JobView:
    """Fresh attempts for a failed job; its upstream_failed descendants go back to blocked behind it."""
    _require_job_id(job_id)
    record = await gateway.get_job(_pool(state), job_id)
    if record is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    if record.status != Status.FAILED.value:
        raise JobNotRetryable(f"job {job_id} is {record.status}; only failed jobs can be re-driven")
    link: SchedulerLink = state.link
    reply = await link.request(lambda rid: RedriveRequest(rid, job_id))
    view = await _load_job(state, job_id)
    if reply.redrive != "redriven":
        raise JobNotRetryable(f"job {job_id} is {view.status}; only failed jobs can be re-driven")
    return view


@get("/jobs/{job_id:str}/logs", summary="A job's lifecycle events and handler output", tags=["jobs"])
async def job_logs(
    job_id: str,
    state: State,
    after: Annotated[int, Parameter(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 500,
) -> list[LogLine]:
    _require_job_id(job_id)
    pool = _pool(state)
    records = await gateway.get_logs(pool, job_id, after_id=after, limit=limit)
    if not records and await gateway.get_job(pool, job_id) is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    return [
        LogLine(
            id=r.id,
            timestamp=timestamp(r.at) or "",
            attempt=r.attempt,
            level=r.level,
            event=r.event,
            message=r.message,
            data=_decode_object(r.data) if r.data else None,
        )
        for r in records
    ]


@get("/health/live", summary="The API process is up", tags=["health"])
async def live() -> dict[str, str]:
    return {"status": "alive"}


@get("/health/ready", summary="Database reachable and scheduler connected", tags=["health"])
async def ready(state: State) -> Response[dict[str, Any]]:
    link: SchedulerLink = state.link
    checks: dict[str, bool] = {
        "database": False,
        "scheduler": False,
        "supervisor": False,
        "accepting": not state.draining,
    }
    with contextlib.suppress(Exception):
        await gateway.ping(_pool(state))
        checks["database"] = True
    with contextlib.suppress(TaskqError):
        reply = await link.request(lambda rid: HealthQuery(rid), timeout=1.0)
        checks["scheduler"] = True
        checks["supervisor"] = bool(reply.dispatching)
    ok = all(checks.values())
    return Response({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@get("/stats", summary="Capacity, resources in use and job counts", tags=["health"])
async def stats(state: State) -> Stats:
    """From the scheduler's state, O(1) however large the history. If the scheduler does not answer,
    from the database (which counts the table: slower as history grows)."""
    settings: Settings = state.settings
    link: SchedulerLink = state.link
    try:
        reply = await link.request(lambda rid: StatsQuery(rid), timeout=2.0)
        counts, running = reply.counts, (reply.in_use["cpu_units"], reply.in_use["memory_mb"])
    except TaskqError:
        pool = _pool(state)
        counts = await gateway.count_by_status(pool)
        running = await gateway.running_resources(pool)
    capacity = ResourceRequirements(settings.cpu_units, settings.memory_mb)
    return Stats(
        capacity=capacity,
        resources_in_use=ResourceRequirements(running[0], running[1]),
        resources_free=ResourceRequirements(capacity.cpu_units - running[0], capacity.memory_mb - running[1]),
        jobs_by_status={s.value: counts.get(s.value, 0) for s in Status},
    )


@get("/metrics", summary="Prometheus metrics of the whole node", tags=["health"], media_type="text/plain")
async def metrics(state: State) -> Response[str]:
    """The node's one scrape target: this API's metrics, then the scheduler's (which include the
    supervisor's figures). See service/telemetry.py for the catalogue."""
    telemetry: Telemetry = state.telemetry
    with contextlib.suppress(Exception):
        started = time.perf_counter()
        await gateway.ping(_pool(state))
        telemetry.record("taskq_db_round_trip", time.perf_counter() - started, actor="api")
    text = telemetry.render()
    link: SchedulerLink = state.link
    with contextlib.suppress(TaskqError):
        reply = await link.request(lambda rid: MetricsQuery(rid), timeout=2.0)
        text += reply.metrics or ""
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


def http_metrics(telemetry: Telemetry) -> Callable[[ASGIApp], ASGIApp]:
    """Counts and times every HTTP request by method, route template and status."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def remember_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, remember_status)
            finally:
                handler = scope.get("route_handler")
                route = next(iter(handler.paths), "?") if handler is not None else "unmatched"
                method = scope.get("method", "?")
                telemetry.add("taskq_http_requests", method=method, route=route, status=str(status))
                telemetry.record(
                    "taskq_http_request_duration", time.perf_counter() - started, method=method, route=route
                )

        return measured

    return middleware


_encode = msgspec.json.Encoder().encode  # what Litestar's encode_json produces for these bodies
_JSON_TYPE = (b"content-type", b"application/json")
_PROBLEM_TYPE = (b"content-type", problems.PROBLEM_JSON.encode())


def fast_submit(app: Litestar, max_body_bytes: int) -> ASGIApp:
    """`POST /jobs` and `POST /jobs/batch` served in front of Litestar; every other request goes to it.

    Litestar's routing, dependency injection, `Request`/`Response` objects and its middleware stack cost
    more CPU per submission than the submission's own work (about a third of the API process's CPU under
    load, measured with py-spy). The two hot routes are answered here with the same functions the
    Litestar handlers call (`submit_one`, `submit_many`), the same problem details (`problems.problem_of`
    picks the handler Litestar would), the same status codes and headers, the same body-size limit (413),
    the draining check first (503), and the same HTTP metrics. The Litestar handlers stay registered, so
    the OpenAPI document describes both routes as before."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST" or scope["path"] not in _FAST_ROUTES:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        state = app.state
        status = 500
        try:
            try:
                _refuse_while_draining(state)
                idempotency_key, body = await _read_request(scope, receive, max_body_bytes)
                if path == "/jobs":
                    status, view = await submit_one(state, body, idempotency_key)
                    content = _encode(view)
                else:
                    status, answer = await submit_many(state, body)
                    content = _encode(answer)
                headers = [_JSON_TYPE, (b"content-length", str(len(content)).encode())]
            except Exception as exc:
                status, problem, extra = problems.problem_of(exc, "POST", path)
                content = _encode(problem)
                headers = [
                    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (extra or {}).items()
                ]
                headers += [_PROBLEM_TYPE, (b"content-length", str(len(content)).encode())]
            start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
            await send(start)
            end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": content, "more_body": False}
            await send(end)
        finally:
            telemetry: Telemetry = state.telemetry
            telemetry.add("taskq_http_requests", method="POST", route=path, status=str(status))
            telemetry.record("taskq_http_request_duration", time.perf_counter() - started, method="POST", route=path)

    return asgi


_FAST_ROUTES = frozenset({"/jobs", "/jobs/batch"})


async def _read_request(scope: Scope, receive: Receive, max_body_bytes: int) -> tuple[str | None, bytes]:
    """The Idempotency-Key header and the body, with the checks the Litestar handlers make, in their order:
    the content type (`require_json`), then the limits that Litestar's `Request.body()` enforces."""
    idempotency_key: str | None = None
    announced: bytes | None = None
    content_type: str | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            announced = value
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"idempotency-key" and idempotency_key is None:
            idempotency_key = value.decode("latin-1")
    require_json(content_type)
    if announced is not None:
        try:
            length = int(announced)
        except ValueError:
            raise ClientException(f"Invalid content-length: {announced.decode('latin-1')!r}") from None
        if length > max_body_bytes:
            raise RequestEntityTooLarge
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                received += len(chunk)
                if received > max_body_bytes:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
    return idempotency_key, chunks[0] if len(chunks) == 1 else b"".join(chunks)


_SPEC_EXAMPLE = {
    "type": "data_export",
    "priority": "high",
    "payload": {"user_id": 123, "format": "csv"},
    "resource_requirements": {"cpu_units": 2, "memory_mb": 512},
    "depends_on": ["job_abc123"],
    "retry_config": {"max_attempts": 3, "backoff_multiplier": 2},
}


@get("/openapi.json", summary="The OpenAPI document, with the request body schemas", tags=["docs"])
async def openapi_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Litestar describes the routes; the request bodies are decoded by msgspec by hand (for problem
    details that name the field), so their schemas are added here from the same Structs."""
    document: dict[str, Any] = request.app.openapi_schema.to_schema()
    (single, batch), components = msgspec.json.schema_components(
        [JobSubmission, BatchSubmission], ref_template="#/components/schemas/{name}"
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(components)
    bodies = {
        "/jobs": {"schema": single, "example": _SPEC_EXAMPLE},
        "/jobs/batch": {
            "schema": batch,
            "example": {"jobs": [{"job_id": "a", "type": "data_fetch"}, {"type": "report", "depends_on": ["a"]}]},
        },
    }
    for path, media in bodies.items():
        operation = document.get("paths", {}).get(path, {}).get("post")
        if operation is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    return document


# ----------------------------------------------------------------------------------------------- the app


def create_app(settings: Settings, database_url: str, scheduler_socket: str, restarts: int = 0) -> Litestar:
    hub = EventHub(settings.stream_buffer_bytes)
    telemetry = Telemetry("api", gauges={"taskq_stream_subscribers": lambda: [(len(hub.subscribers), {})]})
    keyring = KeyRing(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        handlers.load(settings.handlers)
        pool = await gateway.connect_pool(database_url, min_size=2, max_size=10)
        link = SchedulerLink(scheduler_socket, hub.publish, restarts)
        link.start()
        batcher = SubmitBatcher(pool, link, settings.default_timeout_seconds, telemetry)
        batcher.start()
        await keyring.start(pool)  # before the first request: until it answers, keys are required
        app.state.update(
            settings=settings,
            capacity=Resources(settings.cpu_units, settings.memory_mb),
            pool=pool,
            link=link,
            batcher=batcher,
            hub=hub,
            telemetry=telemetry,
            draining=False,
        )
        # SIGUSR1 from the root: the service drains. Reads go on; new submissions get 503.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, lambda: app.state.update(draining=True))
        try:
            yield
        finally:
            await keyring.stop()
            await batcher.stop()
            await link.stop()
            await pool.close()

    return Litestar(
        route_handlers=[
            submit_job,
            submit_batch,
            explain_job,
            dead_letters,
            retry_job,
            get_job,
            list_jobs,
            cancel_job,
            job_logs,
            live,
            ready,
            stats,
            job_stream,
            openapi_document,
            metrics,
            post_key,
            list_keys,
            delete_key,
        ],
        state=State({"keyring": keyring}),
        lifespan=[lifespan],
        exception_handlers={
            TaskqError: problems.on_taskq_error,
            HTTPException: problems.on_http_exception,
            Exception: problems.on_unexpected,
        },
        request_max_body_size=settings.max_body_bytes,
        middleware=[http_metrics(telemetry)],
        openapi_config=OpenAPIConfig(title="taskq", version="0.1.0", path="/schema"),
        debug=False,
        logging_config=None,
    )
