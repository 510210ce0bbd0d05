"""Rows into response bodies, and the reads every route shares: a job with its place in line, the keyset
pager of `GET /jobs` and `GET /dlq`, and the checks of their query parameters."""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from litestar.datastructures import State

from service.api.scheduler_link import SchedulerLink
from service.api.schemas import (
    AttemptView,
    JobPage,
    JobView,
    NodeView,
    ProgressView,
    ResourceRequirements,
    RetryConfig,
)
from service.api.submit import timestamp
from service.errors import InvalidQuery, JobNotFound, TaskqError
from service.model import Priority, Status
from service.protocol import NodeInfo, PositionQuery
from service.store import gateway

decode_object = msgspec.json.Decoder(dict[str, Any]).decode
_decode_attempts = msgspec.json.Decoder(list[dict[str, Any]]).decode


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
        schedule_id=record.schedule_id,
        attempts=[
            AttemptView(
                attempt=a["attempt"],
                started_at=_iso(a.get("started_at")),
                finished_at=_iso(a.get("finished_at")),
                outcome=a.get("outcome"),
                error=a.get("error"),
                worker_pid=a.get("worker_pid"),
                node=a.get("node"),
            )
            for a in attempt_list
        ],
        progress=(
            ProgressView(record.progress, record.progress_message, timestamp(record.progress_at) or "")
            if record.progress is not None
            else None
        ),
        heartbeat_at=timestamp(record.heartbeat_at),
    )


def _json(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, str) else value


def _iso(value: str | None) -> str | None:
    """jsonb renders timestamptz as '2024-01-15T10:00:00.123+00:00'; the API says '...Z'."""
    if value is None:
        return None
    return timestamp(datetime.fromisoformat(value))


def node_view(node: NodeInfo) -> NodeView:
    return NodeView(
        name=node.name,
        leader=node.leader,
        connected=node.connected,
        draining=node.draining,
        capacity=ResourceRequirements(node.capacity["cpu_units"], node.capacity["memory_mb"]),
        in_use=ResourceRequirements(node.in_use["cpu_units"], node.in_use["memory_mb"]),
        running=node.running,
        last_seen=timestamp(datetime.fromtimestamp(node.last_seen, UTC)) or "",
    )


def pool_of(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.pool
    return pool


async def positions_of(state: State, job_ids: list[str]) -> dict[str, int]:
    if not job_ids:
        return {}
    link: SchedulerLink = state.link
    try:
        reply = await link.request(lambda rid: PositionQuery(rid, job_ids), timeout=1.0)
    except TaskqError:
        return {}
    return reply.positions


async def load_job(state: State, job_id: str) -> JobView:
    record = await gateway.get_job(pool_of(state), job_id)
    if record is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    position = None
    if record.status == Status.PENDING.value:
        position = (await positions_of(state, [job_id])).get(job_id)
    return job_view(record, position=position)


def with_timestamps(explanation: dict[str, Any]) -> dict[str, Any]:
    result = dict(explanation)
    for key in ("next_run_at", "started_at", "deadline"):
        if result.get(key) is not None:
            result[key] = timestamp(result[key])
    reservation = result.get("reservation")
    if reservation is not None and reservation.get("until") is not None:
        result["reservation"] = {**reservation, "until": timestamp(reservation["until"])}
    return result


def liveness(record: gateway.JobRecord) -> dict[str, Any]:
    """For `explain` of a running job: when its attempt last gave a sign of life (`ctx.heartbeat` or
    `ctx.progress`), and how long ago. A handler that reports regularly and has gone quiet is stuck."""
    if record.status != Status.RUNNING.value:
        return {}
    seconds = None
    if record.heartbeat_at is not None:
        seconds = round(max(0.0, time.time() - record.heartbeat_at.timestamp()), 3)
    return {"heartbeat_at": timestamp(record.heartbeat_at), "seconds_since_heartbeat": seconds}


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, seq = text.split(":", 1)
        if version != "v1" or not seq.isdigit():
            raise ValueError
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery.field("cursor", "is not a cursor this service issued") from None


def check_filters(
    *,
    status: str | None = None,
    type: str | None = None,
    priority: str | None = None,
    schedule_id: str | None = None,
    id_prefix: str | None = None,
) -> None:
    """The query parameters of the job listings, one rule each, with 400 naming the parameter."""
    if id_prefix is not None and not (0 < len(id_prefix) <= 128 and "\x00" not in id_prefix):
        raise InvalidQuery.field("id_prefix", "must be 1-128 characters without NUL")
    for name, text in (("type", type), ("schedule_id", schedule_id)):
        if text is not None and "\x00" in text:  # PostgreSQL cannot compare text holding NUL: not a 500
            raise InvalidQuery.field(name, "must not contain the NUL character")
    if status is not None and status not in Status.__members__.values():
        raise InvalidQuery.field("status", f"must be one of: {', '.join(s.value for s in Status)}")
    if priority is not None and priority not in Priority.__members__.values():
        raise InvalidQuery.field("priority", f"must be one of: {', '.join(p.value for p in Priority)}")


async def job_page(
    state: State,
    *,
    status: str | None,
    type: str | None,
    priority: str | None,
    limit: int,
    cursor: str | None,
    positions: bool = True,
    schedule_id: str | None = None,
    id_prefix: str | None = None,
) -> JobPage:
    """One page of jobs, newest first, behind an opaque keyset cursor (the last seq shown): the pager of
    `GET /jobs` and `GET /dlq`. One row beyond the page says whether there is a next one."""
    check_filters(status=status, type=type, priority=priority, schedule_id=schedule_id, id_prefix=id_prefix)
    before = decode_cursor(cursor) if cursor else None
    records = await gateway.list_jobs(
        pool_of(state),
        status=status,
        type=type,
        priority=priority,
        before_seq=before,
        limit=limit + 1,
        schedule_id=schedule_id,
        id_prefix=id_prefix,
    )
    page, more = records[:limit], len(records) > limit
    places: dict[str, int] = {}
    if positions:
        places = await positions_of(state, [r.job_id for r in page if r.status == Status.PENDING.value])
    return JobPage(
        items=[job_view(r, position=places.get(r.job_id)) for r in page],
        next_cursor=encode_cursor(page[-1].seq) if more else None,
    )
