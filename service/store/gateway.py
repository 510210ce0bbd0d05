"""One Python function per named query in `queries.sql`; no SQL string lives anywhere else.

Bulk functions take lists of rows and turn them into one array per column, so a burst of work is one
statement. Connection handling (pools, transactions) belongs to the callers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec

from service.model import TERMINAL
from service.store.errors import classify_db_error

_QUERIES_FILE = Path(__file__).with_name("queries.sql")


def _load(path: Path) -> dict[str, str]:
    blocks = re.split(r"^-- name: (\w+)\s*$", path.read_text(), flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(blocks[1::2], blocks[2::2], strict=True)}


Q = _load(_QUERIES_FILE)

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Executor = Connection | asyncpg.Pool
S = TypeVar("S", bound=msgspec.Struct)

_json = msgspec.json.Encoder(order="sorted")


def json_text(value: Any) -> str | None:
    return None if value is None else _json.encode(value).decode()


async def connect_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections speak jsonb as text; raises the store's typed errors.

    Every statement is planned for its actual parameters (`plan_cache_mode = force_custom_plan`), which
    costs a fraction of a millisecond per statement and avoids plans that turn catastrophic as tables
    grow. Measured both ways: with PostgreSQL's default (`auto`), the scheduler's turn statement switched
    to a generic plan made while `jobs` was small (it assumes 100 rows per array parameter) and then
    seq-scanned jobs and attempts every turn (906 scans reading 12 million rows over 560 requests); with
    `force_generic_plan`, the submit path's id lookup planned on an empty table grew linearly with it.
    A custom plan sees the real length of each array and uses the primary keys."""

    async def init(conn: asyncpg.Connection) -> None:
        await conn.execute("SET plan_cache_mode = force_custom_plan")

    try:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=init)
    except Exception as exc:
        raise classify_db_error(exc) from exc
    assert pool is not None
    return pool


# ----------------------------------------------------------------------------------------------- submit path


class ExistingJob(msgspec.Struct, frozen=True, gc=False):
    """What the submit path needs of a job that exists already: a dependency's status, a replay's hash."""

    job_id: str
    status: str
    request_hash: bytes


class InsertedJob(msgspec.Struct, frozen=True, gc=False):
    job_id: str
    seq: int
    created_at: float  # epoch seconds: the inserting transaction's now()


class DuplicateJobId(Exception):
    """A bulk COPY met a job_id committed meanwhile by someone else; nothing of it was written."""


async def find_jobs(db: Executor, job_ids: Sequence[str]) -> dict[str, ExistingJob]:
    records = await db.fetch(Q["find_jobs"], list(job_ids))
    return {r["job_id"]: ExistingJob(r["job_id"], r["status"], r["request_hash"]) for r in records}


class JobRow(msgspec.Struct, gc=False):
    """One row for `insert_jobs`, in column order."""

    job_id: str
    type: str
    priority: str
    status: str
    payload: str  # JSON text
    cpu_units: int
    memory_mb: int
    depends_on: str  # JSON array text
    timeout_seconds: float | None
    max_attempts: int
    backoff_multiplier: float
    initial_delay_seconds: float
    max_delay_seconds: float
    jitter: float
    run_at: datetime | None
    error: str | None
    request_hash: bytes
    schedule_id: str | None = None  # the schedule whose tick submitted it


_JOB_ROW_FIELDS = JobRow.__struct_fields__


async def insert_jobs(db: Executor, rows: Sequence[JobRow]) -> list[InsertedJob]:
    """New jobs and their submission log lines; ids that exist already are skipped (not returned)."""
    columns = [[getattr(row, name) for row in rows] for name in _JOB_ROW_FIELDS]
    records = await db.fetch(Q["insert_jobs"], *columns)
    return [InsertedJob(r["job_id"], r["seq"], r["created_at"]) for r in records]


# Bulk path: COPY instead of INSERT ... unnest. A large batch is streamed in binary with no per-row
# conflict handling, about 40% cheaper in PostgreSQL than the INSERT, and without asyncpg's per-element
# checks of 17 parameter arrays. A job_id that exists already (a replay, or one committed meanwhile by
# someone else) fails the COPY with DuplicateJobId; the caller then redoes the batch with `insert_jobs`,
# which turns such ids into replays.
# Columns a COPY may leave out when every row of the batch holds their default (NULL, or the DEFAULT of
# the table: '{}' payload and dependencies, now() for the times, which in the batch's transaction is the
# `now` its seqs were reserved with). asyncpg encodes every value it is given; a typical batch (no
# dependencies, one status) sends 16 of the 24 columns.
_COPY_DEFAULTS: dict[str, Any] = {
    "payload": "{}",
    "depends_on": [],
    "timeout_seconds": None,
    "run_at": None,
    "next_run_at": None,
    "ready_at": None,
    "finished_at": None,
    "terminal_status": None,
    "error": None,
}


async def reserve_seqs(db: Executor, n: int) -> tuple[list[int], datetime]:
    records = await db.fetch(Q["reserve_seqs"], n)
    return [r["seq"] for r in records], records[0]["now"]


async def copy_jobs(db: Connection, rows: Sequence[JobRow], seqs: Sequence[int], now: datetime) -> list[InsertedJob]:
    """New jobs with the given seqs, created `now`, and their submission log lines: what `insert_jobs`
    writes. Raises DuplicateJobId (and the transaction must be rolled back) if an id exists already."""
    scheduled = [r.status == "scheduled" for r in rows]
    pending = [r.status == "pending" for r in rows]
    upstream_failed = [r.status == "upstream_failed" for r in rows]
    values: dict[str, list[Any]] = {
        "job_id": [r.job_id for r in rows],
        "seq": list(seqs),
        "type": [r.type for r in rows],
        "priority": [r.priority for r in rows],
        "status": [r.status for r in rows],
        "payload": [r.payload for r in rows],
        "cpu_units": [r.cpu_units for r in rows],
        "memory_mb": [r.memory_mb for r in rows],
        "depends_on": [_depends_on.decode(r.depends_on) if r.depends_on != "[]" else [] for r in rows],
        "timeout_seconds": [r.timeout_seconds for r in rows],
        "max_attempts": [r.max_attempts for r in rows],
        "backoff_multiplier": [r.backoff_multiplier for r in rows],
        "initial_delay_seconds": [r.initial_delay_seconds for r in rows],
        "max_delay_seconds": [r.max_delay_seconds for r in rows],
        "jitter": [r.jitter for r in rows],
        "run_at": [r.run_at for r in rows],
        "next_run_at": [r.run_at if s else None for r, s in zip(rows, scheduled, strict=True)],
        "ready_at": [now if p else None for p in pending],
        "finished_at": [now if u else None for u in upstream_failed],
        "terminal_status": ["upstream_failed" if u else None for u in upstream_failed],
        "error": [r.error for r in rows],
        "request_hash": [r.request_hash for r in rows],
    }  # created_at and updated_at: the column default, now(), the same instant as `now`
    try:
        await _copy(db, "jobs", values, _COPY_DEFAULTS)
    except asyncpg.UniqueViolationError as exc:
        raise DuplicateJobId(str(exc)) from exc
    await db.execute(Q["insert_copied_logs"], list(seqs))
    at = now.timestamp()
    return [InsertedJob(r.job_id, seq, at) for r, seq in zip(rows, seqs, strict=True)]


_depends_on = msgspec.json.Decoder(list[str])


async def _copy(db: Connection, table: str, values: dict[str, list[Any]], defaults: dict[str, Any]) -> None:
    """COPY rows given column by column, leaving out each column in `defaults` whose every value is that
    default (the table's own, or NULL): asyncpg encodes every value it is given."""
    columns = [
        name for name, column in values.items() if name not in defaults or any(v != defaults[name] for v in column)
    ]
    records = list(zip(*(values[name] for name in columns), strict=True))
    await db.copy_records_to_table(table, records=records, columns=columns)


async def insert_edges(db: Executor, edges: Iterable[tuple[str, str]]) -> None:
    pairs = list(edges)
    if pairs:
        await db.execute(Q["insert_edges"], [c for c, _ in pairs], [p for _, p in pairs])


class LogRow(msgspec.Struct, gc=False):
    job_id: str
    attempt: int | None
    at: float
    level: str
    event: str
    message: str
    data: str | None = None  # JSON text


# ------------------------------------------------------------------------------------------------ read path


class JobRecord(msgspec.Struct, frozen=True, gc=False):
    """A job as the API shows it: its row, and its attempts as JSON text (`[]` in a list)."""

    job_id: str
    seq: int
    type: str
    priority: str
    status: str
    payload: str  # JSON text
    cpu_units: int
    memory_mb: int
    depends_on: list[str]
    timeout_seconds: float | None
    max_attempts: int
    backoff_multiplier: float
    initial_delay_seconds: float
    max_delay_seconds: float
    jitter: float
    run_at: datetime | None
    next_run_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt_count: int
    error: str | None
    result: str | None  # JSON text
    attempts: str  # JSON text: [{attempt, started_at, finished_at, outcome, error, worker_pid}, ...]
    # The current (last) attempt's `ctx.progress` and `ctx.heartbeat` (service/scheduler/beats.py).
    progress: float | None
    progress_message: str | None
    progress_at: datetime | None
    heartbeat_at: datetime | None
    schedule_id: str | None = None


def _typed(struct: type[S], records: Iterable[asyncpg.Record]) -> list[S]:
    """Rows as the store's typed rows: a Struct's fields are the query's columns, by name."""
    names = struct.__struct_fields__
    return [struct(*(r[name] for name in names)) for r in records]


async def get_job(db: Executor, job_id: str) -> JobRecord | None:
    record = await db.fetchrow(Q["get_job"], job_id)
    return None if record is None else _typed(JobRecord, [record])[0]


_TERMINAL_STATUSES = frozenset(status.value for status in TERMINAL)


async def list_jobs(
    db: Executor,
    *,
    status: str | None,
    type: str | None,
    priority: str | None,
    before_seq: int | None,
    limit: int,
    id_prefix: str | None = None,
    schedule_id: str | None = None,
) -> list[JobRecord]:
    """Keyset pagination, newest first: one statement text per combination of the filters given, so
    that each has a plan of its own with the matching index (jobs_terminal_status_seq_idx, jobs_live_idx,
    jobs_type_seq_idx, jobs_priority_seq_idx or jobs_schedule_seq_idx, each ending in seq)."""
    conditions: list[str] = []
    args: list[Any] = []

    def where(template: str, value: Any) -> None:
        args.append(value)
        conditions.append(template.format(f"${len(args)}"))

    if status is not None:
        # No index holds status, so that a live job's status changes are HOT updates: a live status is
        # found in the live set, a terminal one through terminal_status (set once, when a job ends).
        if status in _TERMINAL_STATUSES:
            where("j.terminal_status = {}::job_status", status)
        else:
            where("j.finished_at IS NULL AND j.status = {}::job_status", status)
    if type is not None:
        where("j.type = {}::text", type)
    if priority is not None:
        where("j.priority = {}::job_priority", priority)
    if id_prefix is not None:
        # No index serves a prefix in seq order: the scan walks seq backwards and stops at a full page.
        where("starts_with(j.job_id, {}::text)", id_prefix)
    if schedule_id is not None:
        where("j.schedule_id = {}::text", schedule_id)
    if before_seq is not None:
        where("j.seq < {}::bigint", before_seq)
    args.append(limit)
    query = Q["list_jobs"].format(where=" AND ".join(conditions) if conditions else "true", limit=f"${len(args)}")
    return _typed(JobRecord, await db.fetch(query, *args))


class Neighbour(msgspec.Struct, frozen=True, gc=False):
    relation: str  # "parent" or "child"
    job_id: str
    type: str
    status: str


async def job_neighbours(db: Executor, job_id: str, limit: int) -> list[Neighbour]:
    return _typed(Neighbour, await db.fetch(Q["job_neighbours"], job_id, limit))


class MinuteCounts(msgspec.Struct, frozen=True, gc=False):
    minute: float  # epoch seconds of the minute's start
    started: int
    succeeded: int
    failed: int
    retried: int


async def recent_throughput(db: Executor, minutes: int) -> list[MinuteCounts]:
    return _typed(MinuteCounts, await db.fetch(Q["recent_throughput"], minutes))


class LogEntry(msgspec.Struct, frozen=True, gc=False):
    id: int
    at: float  # epoch seconds
    attempt: int | None
    level: str
    event: str
    message: str
    data: str | None  # JSON text


async def get_logs(db: Executor, job_id: str, *, after_id: int, limit: int) -> list[LogEntry]:
    return _typed(LogEntry, await db.fetch(Q["get_logs"], job_id, after_id, limit))


async def count_by_status(db: Executor) -> dict[str, int]:
    return {r["status"]: r["n"] for r in await db.fetch(Q["count_by_status"])}


# ------------------------------------------------------------------------------------------- scheduler path


class LiveJob(msgspec.Struct, frozen=True, gc=False):
    """A job as the scheduler rebuilds it: a row of the `scheduler_jobs` view, times as epoch seconds."""

    job_id: str
    type: str
    seq: int
    priority: str
    status: str
    cpu_units: int
    memory_mb: int
    depends_on: list[str]
    timeout_seconds: float | None
    max_attempts: int
    backoff_multiplier: float
    initial_delay_seconds: float
    max_delay_seconds: float
    jitter: float
    attempt_count: int
    charged: int
    created_at: float
    run_at: float | None
    next_run_at: float | None
    ready_at: float | None
    started_at: float | None
    dispatched_to: str | None
    node: str | None


async def load_live_jobs(db: Executor, since: float = 0.0) -> list[LiveJob]:
    return _typed(LiveJob, await db.fetch(Q["load_live_jobs"], since))


async def job_statuses(db: Executor, job_ids: Sequence[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    return {r["job_id"]: r["status"] for r in await db.fetch(Q["job_statuses"], list(job_ids))}


async def load_redrive(db: Executor, job_id: str) -> list[LiveJob]:
    return _typed(LiveJob, await db.fetch(Q["load_redrive"], job_id))


async def running_resources(db: Executor) -> tuple[int, int]:
    record = await db.fetchrow(Q["running_resources"])
    assert record is not None
    return int(record["cpu_units"]), int(record["memory_mb"])


async def try_scheduler_lock(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(Q["try_scheduler_lock"]))


async def last_event_seq(db: Executor) -> int:
    return int(await db.fetchval(Q["last_event_seq"]))


async def first_event_seq(db: Executor) -> int | None:
    value = await db.fetchval(Q["first_event_seq"])
    return None if value is None else int(value)


async def prune_events(db: Executor, up_to_seq: int) -> None:
    await db.execute(Q["prune_events"], up_to_seq)


class PrunedJob(msgspec.Struct, frozen=True, gc=False):
    job_id: str
    status: str


async def prune_finished_jobs(
    db: Executor, succeeded_before: datetime | None, failed_before: datetime | None, limit: int
) -> list[PrunedJob]:
    """Deletes up to `limit` finished jobs past their retention (None: that class is kept forever)."""
    rows = await db.fetch(Q["prune_finished_jobs"], succeeded_before, failed_before, limit)
    return _typed(PrunedJob, rows)


class EventRecord(msgspec.Struct, frozen=True, gc=False):
    """A kept stream event: the fields of the stream's JobEvent, in its order."""

    seq: int
    at: float
    job_id: str
    type: str
    priority: str
    status: str
    event: str
    attempt: int | None
    error: str | None
    progress: float | None
    message: str | None


async def events_after(db: Executor, after_seq: int, limit: int) -> list[EventRecord]:
    return _typed(EventRecord, await db.fetch(Q["events_after"], after_seq, limit))


async def ping(db: Executor) -> None:
    await db.fetchval(Q["ping"], timeout=1.0)


class AttemptChange(msgspec.Struct, gc=False):
    """One attempt row's change in a turn: closed, and/or given its worker's pid, heartbeat or progress."""

    job_id: str
    attempt: int
    closed_at: float | None = None
    outcome: str | None = None
    error: str | None = None
    pid: int | None = None
    progress: float | None = None
    progress_message: str | None = None
    progress_at: float | None = None  # set when progress and progress_message are to be written
    heartbeat_at: float | None = None


class JobChange(msgspec.Struct, gc=False):
    """One job's final state after a turn (its last transition, or its start)."""

    job_id: str
    status: str
    at: float
    error: str | None = None
    result: str | None = None  # JSON text
    next_run_at: float | None = None
    charged: int | None = None
    attempt: int | None = None
    started: bool = False
    dispatched_to: str | None = None  # with a start: the supervisor instance it is sent to
    node: str | None = None  # with a start: the node it runs on


def _columns(rows: Sequence[Any], struct: type[msgspec.Struct]) -> list[list[Any]]:
    return [[getattr(row, name) for row in rows] for name in struct.__struct_fields__]


_EVENT_FIELDS = EventRecord.__struct_fields__  # the stream event as the table holds it


async def copy_events(db: Connection, events: Sequence[Any]) -> None:
    """Stream events in bulk (a batch submission's): COPY skips the per-element checks asyncpg makes on
    array parameters, which cost more than PostgreSQL's own work for nine arrays of thousands."""
    times: dict[float, datetime] = {}  # the events of a turn share a few timestamps: convert each once
    values: dict[str, list[Any]] = {name: [getattr(e, name) for e in events] for name in _EVENT_FIELDS}
    values["at"] = [times.get(at) or times.setdefault(at, datetime.fromtimestamp(at, UTC)) for at in values["at"]]
    # A batch's `submitted` events carry no attempt, error or progress: those NULL columns stay out.
    await _copy(db, "job_events", values, {"attempt": None, "error": None, "progress": None, "message": None})


class StartedJob(msgspec.Struct, frozen=True, gc=False):
    """What a worker needs of a job the turn started."""

    job_id: str
    type: str
    payload: str  # JSON text


async def apply_turn(
    db: Executor,
    attempts: Sequence[AttemptChange],
    opened: Sequence[tuple[str, int, float, str | None]],
    jobs: Sequence[JobChange],
    logs: Sequence[LogRow],
    events: Sequence[Any],
    term: int | None = None,
) -> list[StartedJob]:
    """A scheduler turn's writes in one statement: returns what the workers of started jobs need.
    With a `term` (a cluster's leader) it raises `Fenced` and writes nothing if the lease has moved on."""
    try:
        records = await db.fetch(
            Q["apply_turn"],
            *_columns(attempts, AttemptChange),
            *([o[i] for o in opened] for i in range(4)),
            *_columns(jobs, JobChange),
            *_columns(logs, LogRow),
            *([getattr(e, name) for e in events] for name in _EVENT_FIELDS),
            term,
        )
    except asyncpg.PostgresError as exc:
        _raise_if_fenced(exc)
        raise
    return [StartedJob(r["job_id"], r["type"], r["payload"]) for r in records if r["job_id"] is not None]


class Fenced(Exception):
    """A scheduler's write was refused: its term is no longer the lease's (another scheduler leads)."""


def _raise_if_fenced(exc: asyncpg.PostgresError) -> None:
    if getattr(exc, "sqlstate", None) == FENCED_SQLSTATE:
        raise Fenced(str(exc)) from exc


FENCED_SQLSTATE = "TQF01"  # raised by taskq_fence (migration 20261206000001)


# ------------------------------------------------------------------------------------------ cluster


class Lease(msgspec.Struct, frozen=True, gc=False):
    term: int
    holder: str | None
    address: str | None
    valid: bool  # held and not expired, by the database's clock


async def take_lease(db: Executor, node: str, address: str, seconds: float) -> int | None:
    value = await db.fetchval(Q["take_lease"], node, address, seconds)
    return None if value is None else int(value)


async def renew_lease(db: Executor, term: int, node: str, seconds: float) -> bool:
    return await db.fetchval(Q["renew_lease"], term, node, seconds) is not None


async def release_lease(db: Executor, term: int, node: str) -> None:
    await db.execute(Q["release_lease"], term, node)


async def read_lease(db: Executor) -> Lease:
    row = await db.fetchrow(Q["read_lease"])
    assert row is not None  # the migration inserts the one row
    return Lease(int(row["term"]), row["holder"], row["address"], bool(row["valid"]))


async def node_heartbeat(db: Executor, node: str, clustered: bool) -> None:
    await db.execute(Q["node_heartbeat"], node, clustered)


async def other_live_nodes(db: Executor, node: str, within_seconds: float) -> list[tuple[str, bool]]:
    return [(r["name"], r["clustered"]) for r in await db.fetch(Q["other_live_nodes"], node, within_seconds)]


async def remove_node(db: Executor, node: str) -> None:
    await db.execute(Q["remove_node"], node)


# ------------------------------------------------------------------------------------ schedules and types


class ScheduleRow(msgspec.Struct, frozen=True, gc=False):
    """A cron schedule (the `schedules` table). The API writes these rows; the scheduler fires them."""

    schedule_id: str
    cron: str
    timezone: str
    job: str  # JSON text: the job every tick submits
    overlap: str
    catch_up: str
    paused: bool
    checked_through: datetime  # every tick up to here is decided
    last_fired_at: datetime | None  # the tick of the last job submitted
    last_job_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime


async def insert_schedule(
    db: Executor, schedule_id: str, cron: str, timezone: str, job: str, overlap: str, catch_up: str, paused: bool
) -> ScheduleRow | None:
    """The new schedule, or None when one with this id exists already."""
    record = await db.fetchrow(Q["insert_schedule"], schedule_id, cron, timezone, job, overlap, catch_up, paused)
    return None if record is None else _typed(ScheduleRow, [record])[0]


async def get_schedule(db: Executor, schedule_id: str) -> ScheduleRow | None:
    record = await db.fetchrow(Q["get_schedule"], schedule_id)
    return None if record is None else _typed(ScheduleRow, [record])[0]


async def list_schedules(db: Executor) -> list[ScheduleRow]:
    return _typed(ScheduleRow, await db.fetch(Q["list_schedules"]))


async def update_schedule(db: Executor, row: ScheduleRow, *, retimed: bool) -> ScheduleRow | None:
    """Writes `row`'s settings if the stored row is still at `row.version` (None otherwise). `retimed`:
    the timing changed or the schedule resumed, so it is decided through now."""
    record = await db.fetchrow(
        Q["update_schedule"],
        row.schedule_id,
        row.cron,
        row.timezone,
        row.job,
        row.overlap,
        row.catch_up,
        row.paused,
        row.version,
        retimed,
    )
    return None if record is None else _typed(ScheduleRow, [record])[0]


async def delete_schedule(db: Executor, schedule_id: str) -> bool:
    return await db.fetchval(Q["delete_schedule"], schedule_id) is not None


class ScheduleAdvance(msgspec.Struct, frozen=True, gc=False):
    """A cron pass's bookkeeping for one schedule (see cron.Advance), epoch seconds."""

    schedule_id: str
    version: int
    checked_through: float
    fired_tick: float | None
    job_id: str | None


async def fire_schedules(
    conn: Connection, advances: Sequence[ScheduleAdvance], rows: Sequence[JobRow]
) -> tuple[set[str], list[InsertedJob]]:
    """One cron pass in one transaction: record each schedule's progress, then insert the jobs of the
    schedules still at the version the pass planned with (a PATCH or DELETE in between wins). A job
    whose id exists already (the same tick fired before) is skipped. Returns the ids of the schedules
    that stood, and the jobs inserted."""
    async with conn.transaction():
        records = await conn.fetch(Q["advance_schedules"], *_columns(advances, ScheduleAdvance))
        stood = {r["schedule_id"] for r in records}
        kept = [row for row in rows if row.schedule_id in stood]
        inserted = await insert_jobs(conn, kept) if kept else []
    return stood, inserted


class TypeControlRow(msgspec.Struct, frozen=True, gc=False):
    type: str
    paused: bool
    max_running: int | None
    max_starts_per_second: float | None
    updated_at: datetime


async def upsert_type_control(
    db: Executor,
    job_type: str,
    *,
    paused: bool | None,
    max_running: tuple[bool, int | None],
    max_starts_per_second: tuple[bool, float | None],
) -> TypeControlRow:
    """PATCH a type's controls: `paused` None and a (False, _) pair keep the stored value."""
    record = await db.fetchrow(Q["upsert_type_control"], job_type, paused, *max_running, *max_starts_per_second)
    assert record is not None
    return _typed(TypeControlRow, [record])[0]


async def list_type_controls(db: Executor) -> list[TypeControlRow]:
    return _typed(TypeControlRow, await db.fetch(Q["list_type_controls"]))


async def live_counts_by_type(db: Executor) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for r in await db.fetch(Q["live_counts_by_type"]):
        counts.setdefault(r["type"], {})[r["status"]] = int(r["n"])
    return counts


# ------------------------------------------------------------------------------------------------- API keys


class DuplicateKeyId(Exception):
    """A new key drew the id of an existing one (48 random bits: practically never; the caller draws again)."""


class ApiKey(msgspec.Struct, frozen=True, gc=False):
    """A key as it is listed: never its secret, which is not stored."""

    key_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    rate_limit_submit: str | None = None  # the key's own limits; None: the node's settings
    rate_limit_requests: str | None = None


class KeyCheck(msgspec.Struct, frozen=True, gc=False):
    """What verifying a presented key needs."""

    key_id: str
    scopes: list[str]
    salt: bytes
    hash: bytes
    revoked: bool
    rate_limit_submit: str | None = None
    rate_limit_requests: str | None = None


async def insert_api_key(
    db: Executor,
    key_id: str,
    name: str,
    scopes: Sequence[str],
    salt: bytes,
    digest: bytes,
    rates: tuple[str | None, str | None] = (None, None),
) -> ApiKey:
    """`rates`: the key's own (submit, requests) rate limits, as their settings spell them."""
    try:
        record = await db.fetchrow(Q["insert_api_key"], key_id, name, list(scopes), salt, digest, *rates)
    except asyncpg.UniqueViolationError as exc:
        raise DuplicateKeyId(key_id) from exc
    except Exception as exc:
        raise classify_db_error(exc) from exc
    assert record is not None
    return ApiKey(**dict(record))


async def list_api_keys(db: Executor) -> list[ApiKey]:
    return _typed(ApiKey, await db.fetch(Q["list_api_keys"]))


async def find_api_key(db: Executor, key_id: str) -> KeyCheck | None:
    try:
        record = await db.fetchrow(Q["find_api_key"], key_id)
    except Exception as exc:
        raise classify_db_error(exc) from exc
    return None if record is None else KeyCheck(**dict(record))


async def revoke_api_key(db: Executor, key_id: str) -> ApiKey | None:
    """The revoked key, or None when no key has this id."""
    record = await db.fetchrow(Q["revoke_api_key"], key_id)
    return None if record is None else ApiKey(**dict(record))


async def any_api_key(db: Executor) -> bool:
    try:
        return bool(await db.fetchval(Q["any_api_key"]))
    except Exception as exc:
        raise classify_db_error(exc) from exc
