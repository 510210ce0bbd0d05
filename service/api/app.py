"""The HTTP API's routes and the Litestar app. Beside it: `views.py` turns rows into response bodies and
pages job listings, `intake.py` takes submissions, `fast_path.py` answers the two submit routes in front
of Litestar, `auth.py` guards everything, `keys.py` and `stream.py` hold their own routes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Litestar, Request, Response, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.params import Parameter

from service import handlers
from service.api import openapi, problems
from service.api.auth import KeyRing
from service.api.console import console_file, console_index, job_graph, load_console, throughput
from service.api.controls import (
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    list_types,
    patch_schedule,
    patch_type,
)
from service.api.fast_path import http_metrics
from service.api.intake import JOB_ID, refuse_while_draining, submit_many, submit_one
from service.api.keys import delete_key, list_keys, post_key, whoami
from service.api.scheduler_link import SchedulerLink
from service.api.schemas import (
    BatchAccepted,
    JobPage,
    JobView,
    LogLine,
    NodeView,
    ResourceRequirements,
    Stats,
    require_json,
)
from service.api.stream import EventHub, job_stream
from service.api.submit import SubmitBatcher, timestamp
from service.api.views import decode_object, job_page, liveness, load_job, node_view, pool_of, with_timestamps
from service.errors import JobNotCancellable, JobNotFound, JobNotRetryable, TaskqError
from service.model import Resources, Status
from service.protocol import CancelRequest, ExplainQuery, HealthQuery, MetricsQuery, RedriveRequest, StatsQuery
from service.settings import Settings
from service.store import gateway
from service.telemetry import Telemetry

# ------------------------------------------------------------------------------------------------ routes


@post("/jobs", status_code=201, summary="Submit a job", tags=["jobs"])
async def submit_job(request: Request[Any, Any, Any], state: State) -> Response[JobView]:
    """Commits the job, then schedules it. Same job_id and body again: 200 with the existing job."""
    # Served by `fast_submit` in front of Litestar; this handler describes the route in the OpenAPI
    # document and answers if the app runs without the fast path.
    refuse_while_draining(state)
    require_json(request.headers.get("content-type"))
    status, view = await submit_one(state, await request.body(), request.headers.get("idempotency-key"))
    return Response(view, status_code=status)


def _require_job_id(job_id: str) -> None:
    """An id outside the job_id pattern names no job; answering 404 here also keeps bytes PostgreSQL
    rejects (a NUL) away from the database, where they would fail the query with a 500."""
    if not JOB_ID.match(job_id):
        raise JobNotFound(f"no job has id {job_id!r}")


@post("/jobs/batch", status_code=201, summary="Submit a batch of jobs, all or nothing", tags=["jobs"])
async def submit_batch(request: Request[Any, Any, Any], state: State) -> Response[BatchAccepted]:
    """Jobs may depend on each other in any order; a cycle is rejected with its path, and nothing is created."""
    # Served by `fast_submit`, as POST /jobs is.
    refuse_while_draining(state)
    require_json(request.headers.get("content-type"))
    status, answer = await submit_many(state, await request.body())
    return Response(answer, status_code=status)


@get("/jobs/{job_id:str}/explain", summary="Why a job is not running yet", tags=["jobs"])
async def explain_job(job_id: str, state: State) -> dict[str, Any]:
    """The scheduler's own view: open dependencies, resource shortfall, reservation, priority, retry time."""
    _require_job_id(job_id)
    record = await gateway.get_job(pool_of(state), job_id)
    if record is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    if not Status(record.status).terminal:
        link: SchedulerLink = state.link
        reply = await link.request(lambda rid: ExplainQuery(rid, job_id))
        if reply.explanation is not None:
            return {"job_id": job_id, **with_timestamps(reply.explanation), **liveness(record)}
        record = await gateway.get_job(pool_of(state), job_id)  # it finished between the two reads
        assert record is not None
    error = f" ({record.error})" if record.error else ""
    return {"job_id": job_id, "status": record.status, "reason": f"finished: {record.status}{error}"}


@get("/jobs/{job_id:str}", summary="Get a job with its attempts", tags=["jobs"])
async def get_job(job_id: str, state: State) -> JobView:
    _require_job_id(job_id)
    return await load_job(state, job_id)


@get("/jobs", summary="List jobs, newest first, with keyset pagination", tags=["jobs"])
async def list_jobs(
    state: State,
    status: str | None = None,
    type: str | None = None,
    priority: str | None = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    cursor: str | None = None,
    schedule_id: str | None = None,
    id_prefix: str | None = None,
) -> JobPage:
    return await job_page(
        state,
        status=status,
        type=type,
        priority=priority,
        limit=limit,
        cursor=cursor,
        schedule_id=schedule_id,
        id_prefix=id_prefix,
    )


@patch("/jobs/{job_id:str}/cancel", summary="Cancel a job", tags=["jobs"])
async def cancel_job(job_id: str, state: State) -> JobView:
    _require_job_id(job_id)
    link: SchedulerLink = state.link
    record = await gateway.get_job(pool_of(state), job_id)
    if record is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    if Status(record.status).terminal:
        raise JobNotCancellable(f"job {job_id} is already {record.status}")
    reply = await link.request(lambda rid: CancelRequest(rid, job_id))
    view = await load_job(state, job_id)
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
    failed = Status.FAILED.value
    return await job_page(state, status=failed, type=type, priority=None, limit=limit, cursor=cursor, positions=False)


@post("/jobs/{job_id:str}/retry", status_code=200, summary="Re-drive a failed job", tags=["dead letter queue"])
async def retry_job(job_id: str, state: State) -> JobView:
    """Fresh attempts for a failed job; its upstream_failed descendants go back to blocked behind it."""
    _require_job_id(job_id)
    record = await gateway.get_job(pool_of(state), job_id)
    if record is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    if record.status != Status.FAILED.value:
        raise JobNotRetryable(f"job {job_id} is {record.status}; only failed jobs can be re-driven")
    link: SchedulerLink = state.link
    reply = await link.request(lambda rid: RedriveRequest(rid, job_id))
    view = await load_job(state, job_id)
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
    pool = pool_of(state)
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
            data=decode_object(r.data) if r.data else None,
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
        await gateway.ping(pool_of(state))
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
    capacity = ResourceRequirements(settings.cpu_units, settings.memory_mb)
    nodes: list[NodeView] | None = None
    leader: str | None = None
    try:
        reply = await link.request(lambda rid: StatsQuery(rid), timeout=2.0)
        counts, running = reply.counts, (reply.in_use["cpu_units"], reply.in_use["memory_mb"])
        if reply.capacity:
            capacity = ResourceRequirements(reply.capacity["cpu_units"], reply.capacity["memory_mb"])
        nodes = None if reply.nodes is None else [node_view(n) for n in reply.nodes]
        leader = reply.leader
    except TaskqError:
        pool = pool_of(state)
        counts = await gateway.count_by_status(pool)
        running = await gateway.running_resources(pool)
    return Stats(
        capacity=capacity,
        resources_in_use=ResourceRequirements(running[0], running[1]),
        resources_free=ResourceRequirements(capacity.cpu_units - running[0], capacity.memory_mb - running[1]),
        jobs_by_status={s.value: counts.get(s.value, 0) for s in Status},
        leader=leader,
        nodes=nodes,
    )


@get("/metrics", summary="Prometheus metrics of the whole node", tags=["health"], media_type="text/plain")
async def metrics(state: State) -> Response[str]:
    """The node's one scrape target: this API's metrics, then the scheduler's (which include the
    supervisor's figures). See service/telemetry.py for the catalogue."""
    telemetry: Telemetry = state.telemetry
    with contextlib.suppress(Exception):
        started = time.perf_counter()
        await gateway.ping(pool_of(state))
        telemetry.record("taskq_db_round_trip", time.perf_counter() - started, actor="api")
    text = telemetry.render()
    link: SchedulerLink = state.link
    with contextlib.suppress(TaskqError):
        reply = await link.request(lambda rid: MetricsQuery(rid), timeout=2.0)
        # In a cluster the leader's node alone serves the scheduler's series: every node's API reaches
        # the leader, and a scrape of each would count them once per node.
        settings: Settings = state.settings
        if reply.leader in (None, settings.node):
            text += reply.metrics or ""
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@get("/openapi.json", summary="The OpenAPI document, with the request body schemas", tags=["docs"])
async def openapi_document(request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    """Litestar describes the routes; `service.api.openapi` adds what it cannot know (request bodies,
    every problem status, the server's constraints, this node's job types, capacity and key policy)."""
    keyring: KeyRing = state.keyring
    return openapi.document(
        request.app.openapi_schema.to_schema(),
        job_types=handlers.known_types(),
        capacity=state.capacity,
        keys_required=not keyring.open,
    )


# ----------------------------------------------------------------------------------------------- the app


def create_app(settings: Settings, database_url: str, scheduler_socket: str, restarts: int = 0) -> Litestar:
    hub = EventHub(settings.stream_buffer_bytes)
    telemetry = Telemetry(
        "api", gauges={"taskq_stream_subscribers": lambda: [(len(hub.subscribers), {})]}, node=settings.node
    )
    keyring = KeyRing(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        handlers.load(settings.handlers)
        pool = await gateway.connect_pool(database_url, min_size=2, max_size=10)
        own = Resources(settings.cpu_units, settings.memory_mb)
        app.state.update(capacity=own)

        def largest_node(largest: list[int]) -> None:
            # In a cluster a job may need more than this node offers, as long as some node offers it.
            app.state.update(capacity=Resources(max(own.cpu_units, largest[0]), max(own.memory_mb, largest[1])))

        link = SchedulerLink(scheduler_socket, hub.publish, restarts, node=settings.node, on_largest_node=largest_node)
        link.start()
        batcher = SubmitBatcher(pool, link, settings.default_timeout_seconds, telemetry)
        batcher.start()
        await keyring.start(pool)  # before the first request: until it answers, keys are required
        app.state.update(
            settings=settings,
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
            whoami,
            job_graph,
            throughput,
            console_index,
            console_file,
            create_schedule,
            list_schedules,
            get_schedule,
            patch_schedule,
            delete_schedule,
            list_types,
            patch_type,
        ],
        state=State({"keyring": keyring, "console": load_console()}),
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
