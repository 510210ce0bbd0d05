"""The operator's controls: cron schedules (`/schedules`) and per-type dispatch controls (`/types`).

Both are configuration, not job state: the API writes their rows (`schedules`, `type_controls`) and then
tells the scheduler (`SchedulesChanged`, `TypeControl`), which fires the schedules and enforces the
controls. If the scheduler is away, the commit stands and the 200 is sent anyway: a scheduler loads
both at its start, and again whenever an API (re)connects, so a lost notice delays a change by at most
one reconnection. tests/unit/test_house_rules.py allows exactly these writes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.datastructures import State

from service import handlers
from service.api.scheduler_link import SchedulerLink
from service.api.schemas import (
    SCHEDULE_ID_PATTERN,
    JobTemplate,
    ScheduleView,
    TypeView,
    decode_schedule,
    decode_schedule_patch,
    decode_template,
    decode_type_patch,
    require_json,
    validate,
)
from service.api.submit import timestamp
from service.errors import InvalidRequest, ScheduleExists, ScheduleNotFound, TaskqError, TypeNotFound
from service.model import Resources, Status
from service.protocol import ApiToScheduler, SchedulesChanged, TypeControl
from service.scheduler import cron
from service.store import gateway

log = logging.getLogger("taskq.api.controls")

NEXT_FIRE_TIMES = 5  # how many upcoming ticks a schedule's view lists
PATCH_ATTEMPTS = 5  # read-merge-write rounds a PATCH tries while other PATCHes of the schedule race it
_SCHEDULE_ID = re.compile(SCHEDULE_ID_PATTERN)
_LIVE = tuple(s.value for s in (Status.BLOCKED, Status.PENDING, Status.SCHEDULED, Status.RUNNING))
_encode = msgspec.json.Encoder(order="sorted").encode


# --------------------------------------------------------------------------------------------- schedules


def _check_timing(cron_text: str, timezone: str) -> None:
    try:
        cron.expression(cron_text)
    except cron.CronError as exc:
        raise InvalidRequest.field("cron", str(exc)) from None
    try:
        cron.zone(timezone)
    except cron.CronError as exc:
        raise InvalidRequest.field("timezone", str(exc)) from None


def _check_job(state: State, job: JobTemplate) -> None:
    """The rules of POST /jobs, naming the field under `job.`."""
    capacity: Resources = state.capacity
    validate(job.submission(), capacity=capacity, known_types=handlers.known_types(), prefix="job.")


def schedule_view(row: gateway.ScheduleRow, now: float) -> ScheduleView:
    upcoming: list[str] = []
    if not row.paused:
        after = max(now, row.checked_through.timestamp())
        upcoming = [timestamp(t) or "" for t in cron.next_fire_times(row.cron, row.timezone, after, NEXT_FIRE_TIMES)]
    return ScheduleView(
        schedule_id=row.schedule_id,
        cron=row.cron,
        timezone=row.timezone,
        job=decode_template(row.job),
        overlap=row.overlap,
        catch_up=row.catch_up,
        paused=row.paused,
        next_fire_times=upcoming,
        last_fired_at=timestamp(row.last_fired_at),
        last_job_id=row.last_job_id,
        checked_through=timestamp(row.checked_through) or "",
        created_at=timestamp(row.created_at) or "",
        updated_at=timestamp(row.updated_at) or "",
    )


async def _tell(state: State, build: Callable[[int], ApiToScheduler]) -> None:
    link: SchedulerLink = state.link
    try:
        await link.request(build, timeout=2.0)
    except TaskqError:  # committed: the scheduler loads it when it (re)connects
        log.warning("the scheduler did not hear of a change; it loads it when the API reconnects")


async def _existing(state: State, schedule_id: str) -> gateway.ScheduleRow:
    # An id outside the pattern names no schedule; checking first keeps a NUL away from PostgreSQL.
    row = await gateway.get_schedule(state.pool, schedule_id) if _SCHEDULE_ID.match(schedule_id) else None
    if row is None:
        raise ScheduleNotFound.named(schedule_id)
    return row


@post("/schedules", status_code=201, summary="Create a cron schedule", tags=["schedules"])
async def create_schedule(request: Request[Any, Any, Any], state: State) -> Response[ScheduleView]:
    """Every tick of `cron` (in `timezone`) submits `job` as the job `<schedule_id>:<tick>`."""
    require_json(request.headers.get("content-type"))
    body = decode_schedule(await request.body())
    _check_timing(body.cron, body.timezone)
    _check_job(state, body.job)
    row = await gateway.insert_schedule(
        state.pool,
        body.schedule_id,
        body.cron,
        body.timezone,
        _encode(body.job).decode(),
        body.overlap,
        body.catch_up,
        body.paused,
    )
    if row is None:
        message = f"a schedule with id {body.schedule_id!r} exists already"
        raise ScheduleExists(message, errors=[{"field": "schedule_id", "message": message}])
    await _tell(state, SchedulesChanged)
    log.info("schedule %s created: %r in %s", row.schedule_id, row.cron, row.timezone)
    return Response(schedule_view(row, time.time()), status_code=201)


@get("/schedules", summary="List the cron schedules", tags=["schedules"])
async def list_schedules(state: State) -> list[ScheduleView]:
    now = time.time()
    return [schedule_view(row, now) for row in await gateway.list_schedules(state.pool)]


@get("/schedules/{schedule_id:str}", summary="Get a cron schedule with its next fire times", tags=["schedules"])
async def get_schedule(schedule_id: str, state: State) -> ScheduleView:
    return schedule_view(await _existing(state, schedule_id), time.time())


@patch("/schedules/{schedule_id:str}", summary="Pause, resume or change a cron schedule", tags=["schedules"])
async def patch_schedule(schedule_id: str, request: Request[Any, Any, Any], state: State) -> ScheduleView:
    """Resuming, or changing `cron` or `timezone`, starts the schedule afresh from now: ticks from
    before the change are not caught up."""
    require_json(request.headers.get("content-type"))
    body = decode_schedule_patch(await request.body())
    if body.job is not msgspec.UNSET:
        _check_job(state, body.job)
    for _ in range(PATCH_ATTEMPTS):
        row = await _existing(state, schedule_id)
        changes: dict[str, Any] = {
            name: value for name, value in msgspec.structs.asdict(body).items() if value is not msgspec.UNSET
        }
        if "job" in changes:
            changes["job"] = _encode(changes["job"]).decode()
        merged = msgspec.structs.replace(row, **changes)
        _check_timing(merged.cron, merged.timezone)
        retimed = (merged.cron, merged.timezone) != (row.cron, row.timezone) or (row.paused and not merged.paused)
        updated = await gateway.update_schedule(state.pool, merged, retimed=retimed)
        if updated is not None:
            await _tell(state, SchedulesChanged)
            return schedule_view(updated, time.time())
    raise InvalidRequest.field("schedule_id", "is being changed by others at this moment; retry")


@delete("/schedules/{schedule_id:str}", status_code=204, summary="Delete a cron schedule", tags=["schedules"])
async def delete_schedule(schedule_id: str, state: State) -> None:
    """Its jobs stay (with their schedule_id); nothing fires after the answer."""
    await _existing(state, schedule_id)
    if not await gateway.delete_schedule(state.pool, schedule_id):
        raise ScheduleNotFound.named(schedule_id)
    await _tell(state, SchedulesChanged)


# ------------------------------------------------------------------------------------------------- types


def _type_view(
    job_type: str, control: gateway.TypeControlRow | None, counts: dict[str, dict[str, int]], known: frozenset[str]
) -> TypeView:
    of_type = counts.get(job_type, {})
    return TypeView(
        type=job_type,
        registered=job_type in known,
        paused=control.paused if control is not None else False,
        max_running=control.max_running if control is not None else None,
        max_starts_per_second=control.max_starts_per_second if control is not None else None,
        jobs={status: of_type.get(status, 0) for status in _LIVE},
    )


@get("/types", summary="Job types with their dispatch controls and live jobs", tags=["types"])
async def list_types(state: State) -> list[TypeView]:
    """Every registered type, and any other type that has controls or live jobs."""
    known = handlers.known_types()
    controls = {c.type: c for c in await gateway.list_type_controls(state.pool)}
    counts = await gateway.live_counts_by_type(state.pool)
    return [_type_view(t, controls.get(t), counts, known) for t in sorted(known | set(controls) | set(counts))]


@patch("/types/{job_type:str}", summary="Pause, resume or limit a job type", tags=["types"])
async def patch_type(job_type: str, request: Request[Any, Any, Any], state: State) -> TypeView:
    """`paused`, `max_running` and `max_starts_per_second`; a field left out keeps its value, and null
    lifts a limit. Running jobs of a paused type finish; waiting ones keep their place."""
    known = handlers.known_types()
    if job_type not in known:
        message = f"no handler is registered for job type {job_type!r}; known types: {', '.join(sorted(known))}"
        raise TypeNotFound(message, errors=[{"field": "type", "message": message}])
    require_json(request.headers.get("content-type"))
    body = decode_type_patch(await request.body())
    unset = msgspec.UNSET
    stored = await gateway.upsert_type_control(
        state.pool,
        job_type,
        paused=None if body.paused is unset else body.paused,
        max_running=(False, None) if body.max_running is unset else (True, body.max_running),
        max_starts_per_second=(
            (False, None) if body.max_starts_per_second is unset else (True, body.max_starts_per_second)
        ),
    )
    await _tell(
        state,
        lambda rid: TypeControl(rid, job_type, stored.paused, stored.max_running, stored.max_starts_per_second),
    )
    log.info(
        "type %s: paused %s, max_running %s, max_starts_per_second %s",
        job_type,
        stored.paused,
        stored.max_running,
        stored.max_starts_per_second,
    )
    counts: dict[str, dict[str, int]] = {}
    with contextlib.suppress(Exception):  # the counts are a courtesy: the change is what was asked
        counts = await gateway.live_counts_by_type(state.pool)
    return _type_view(job_type, stored, counts, known)
