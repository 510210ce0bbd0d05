"""Group commit of submissions: concurrent POSTs share one transaction and one scheduler notice.

A durable commit costs far more than building a row, so the flusher takes every submission waiting at
the moment it starts, validates dependencies and idempotency for all of them with one read, inserts
them with one statement, commits, and only then answers. While one group commits, the next gathers;
no timer adds latency when the service is idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import msgspec

from service.api.scheduler_link import SchedulerLink
from service.api.schemas import JobSubmission, request_hash
from service.errors import DependencyNotFound, IdempotencyConflict, ServiceUnavailable
from service.model import Status, first_status
from service.protocol import NewJob, Submitted
from service.store import gateway
from service.store.errors import DatabaseUnavailable, classify_db_error
from service.store.gateway import JobRow
from service.telemetry import Telemetry

log = logging.getLogger("taskq.api.submit")

MAX_GROUP = 5000
FLUSHERS = 2
COPY_THRESHOLD = 64  # a batch of at least this many new jobs is written with COPY (see gateway.copy_jobs)


@dataclass
class Accepted:
    """The outcome of one submission: created now (201) or an identical replay (200)."""

    job_id: str
    created: bool
    status: str = ""
    created_at: float = 0.0
    position: int | None = None
    started_at: float | None = None
    error: str | None = None


@dataclass
class _Pending:
    submission: JobSubmission
    job_id: str
    digest: bytes
    future: asyncio.Future[Accepted] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    index: int | None = None  # position in a batch, for error field names
    error: str | None = None  # why it was committed as upstream_failed

    @property
    def field_prefix(self) -> str:
        return "" if self.index is None else f"jobs.{self.index}."


def new_job_id() -> str:
    return new_job_ids(1)[0]


def new_job_ids(n: int) -> list[str]:
    """`n` ids like `new_job_id`'s, from one read of the kernel's random source instead of one per id."""
    raw = os.urandom(16 * n).hex()
    return [f"job_{raw[i : i + 32]}" for i in range(0, 32 * n, 32)]


class SubmitBatcher:
    def __init__(self, pool: asyncpg.Pool, link: SchedulerLink, default_timeout: float, telemetry: Telemetry) -> None:
        self.pool = pool
        self.telemetry = telemetry
        self.default_timeout = default_timeout
        self.link = link
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        # Groups being committed, and a condition to wait until there are none (see _in_order).
        self._in_flight = 0
        self._settled = asyncio.Condition()
        self._notices: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        # Two groups in flight: while one waits for its commit (PostgreSQL's fsync), the next is built and
        # sent. Jobs of concurrent requests have no order between them; a client that waits for its 201
        # before the next request still gets increasing seqs.
        self._tasks = [asyncio.create_task(self._flush_forever()) for _ in range(FLUSHERS)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def submit(self, submission: JobSubmission, job_id: str | None = None) -> Accepted:
        job_id = job_id or submission.job_id or new_job_id()
        pending = _Pending(submission, job_id, request_hash(submission, job_id))
        await self._queue.put(pending)
        return await pending.future

    async def _flush_forever(self) -> None:
        while True:
            group = [await self._queue.get()]
            while not self._queue.empty() and len(group) < MAX_GROUP:
                group.append(self._queue.get_nowait())
            try:
                created = await self._commit(group)
            except Exception as exc:
                failure = classify_db_error(exc)
                if isinstance(failure, DatabaseUnavailable):
                    failure = ServiceUnavailable("the database is unreachable; retry shortly")
                else:
                    log.exception("submit group of %d failed", len(group))
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(failure)
                continue
            if created:
                task = asyncio.create_task(self._notify(created))
                self._notices.add(task)
                task.add_done_callback(self._notices.discard)

    async def submit_batch(self, submissions: list[JobSubmission]) -> list[Accepted]:
        """All or nothing, in a transaction of its own. Dependencies may point anywhere inside the batch
        (the caller has checked for cycles and ordered the batch parents first)."""
        group = [_Pending(s, s.job_id or new_job_id(), b"", index=i) for i, s in enumerate(submissions)]
        for item in group:
            item.digest = request_hash(item.submission, item.job_id)
        try:
            created = await self._commit(group, atomic=True, bulk=True)
        except gateway.DuplicateJobId:
            # One of its ids exists already (a replayed batch, or a rival committed it meanwhile); the COPY
            # was rolled back. The INSERT path turns such ids into replays or conflicts.
            created = await self._commit(group, atomic=True)
        if created:
            await self._notify(created)
        return [item.future.result() for item in group]

    async def _commit(
        self, group: list[_Pending], *, atomic: bool = False, bulk: bool = False
    ) -> list[tuple[_Pending, NewJob]]:
        """One transaction for the whole group. Resolves the futures of replays and rejects; the created
        ones are resolved by `_notify`. `atomic`: any reject raises and rolls the whole group back.
        `bulk`: write a large group with COPY (raises DuplicateJobId if an id exists, see `submit_batch`).

        Existing ids are not looked up first: an insert skips them (ON CONFLICT) and they are read back as
        replays afterwards, so the common case (new ids, no dependencies) is one statement in autocommit."""
        deps = {dep for item in group for dep in item.submission.depends_on}
        batch_ids = {item.job_id for item in group} if atomic else set()
        started = time.perf_counter()
        async with self._in_order(wait=bool(deps)), self.pool.acquire() as conn:
            # A transaction only where several statements must commit together.
            transaction = conn.transaction() if deps or atomic else contextlib.nullcontext()
            async with transaction:
                known = await gateway.find_jobs(conn, sorted(deps)) if deps else {}
                rows: list[JobRow] = []
                chosen: list[_Pending] = []
                in_group: dict[str, _Pending] = {}
                now = time.time()
                for item in group:
                    if item.job_id in in_group:
                        continue  # resolved as a replay below
                    missing = [
                        d
                        for d in item.submission.depends_on
                        if d not in known and d not in in_group and d not in batch_ids
                    ]
                    if missing:
                        field = f"{item.field_prefix}depends_on"
                        error = DependencyNotFound(
                            f"{field}: unknown job(s) {', '.join(missing)}",
                            errors=[{"field": field, "message": f"unknown job(s): {', '.join(missing)}"}],
                        )
                        if atomic:
                            raise error
                        item.future.set_exception(error)
                        continue
                    in_group[item.job_id] = item
                    status, error_text = _initial_status(item.submission, known, now)
                    item.error = error_text
                    rows.append(_row(item, status, error_text, self.default_timeout))
                    chosen.append(item)
                inserted: dict[str, gateway.InsertedJob] = {}
                if bulk and len(rows) >= COPY_THRESHOLD:
                    seqs, created_at = await gateway.reserve_seqs(conn, len(rows))
                    inserted = {job.job_id: job for job in await gateway.copy_jobs(conn, rows, seqs, created_at)}
                elif rows:
                    inserted = {job.job_id: job for job in await gateway.insert_jobs(conn, rows)}
                created = [(item, row) for item, row in zip(chosen, rows, strict=True) if item.job_id in inserted]
                edges = [(item.job_id, dep) for item, _ in created for dep in item.submission.depends_on]
                if edges:
                    await gateway.insert_edges(conn, edges)
                # Replays: identical body -> the existing job; different body -> conflict.
                replays = [item for item in group if not item.future.done() and item.job_id not in inserted]
                if replays:
                    existing = await gateway.find_jobs(conn, [i.job_id for i in replays])
                    for item in replays:
                        record = existing.get(item.job_id)
                        original = record.request_hash if record is not None else in_group[item.job_id].digest
                        if original != item.digest:
                            conflict = IdempotencyConflict(
                                f"job {item.job_id} already exists with a different body; "
                                "use a new job_id or resend the original body"
                            )
                            if atomic:
                                raise conflict
                            item.future.set_exception(conflict)
                        else:
                            item.future.set_result(Accepted(item.job_id, created=False))
        self.telemetry.record("taskq_submit_commit_duration", time.perf_counter() - started)
        return [
            (item, _new_job(item, row, inserted[item.job_id].seq, inserted[item.job_id].created_at))
            for item, row in created
        ]

    @contextlib.asynccontextmanager
    async def _in_order(self, *, wait: bool) -> AsyncIterator[None]:
        """Count a group in flight. A group with dependencies first waits for every group already in
        flight to finish: a dependency submitted just before (its 201 not yet sent) may be in one of them,
        and the lookup must see it committed, as it did when groups were committed one at a time."""
        async with self._settled:
            if wait:
                await self._settled.wait_for(lambda: self._in_flight == 0)
            self._in_flight += 1
        try:
            yield
        finally:
            async with self._settled:
                self._in_flight -= 1
                self._settled.notify_all()

    async def _notify(self, created: list[tuple[_Pending, NewJob]]) -> None:
        """Tell the scheduler; answer each client with its place in line (or without, if it is away)."""
        positions: dict[str, int] = {}
        statuses: dict[str, str] = {}
        started: dict[str, float] = {}
        try:
            reply = await self.link.request(lambda rid: Submitted(rid, [job for _, job in created]))
            positions, statuses = reply.positions, {k: v.value for k, v in reply.statuses.items()}
            started = reply.started_at
        except ServiceUnavailable:
            log.warning("scheduler unavailable; %d committed jobs wait for its rebuild", len(created))
        for item, job in created:
            if not item.future.done():
                item.future.set_result(
                    Accepted(
                        job.job_id,
                        created=True,
                        status=statuses.get(job.job_id, job.status.value),
                        created_at=job.created_at,
                        position=positions.get(job.job_id),
                        started_at=started.get(job.job_id),
                        error=item.error,
                    )
                )


def _initial_status(
    submission: JobSubmission, known: Mapping[str, gateway.ExistingJob], now: float
) -> tuple[Status, str | None]:
    """Best knowledge at commit time; the scheduler corrects it if a dependency finishes meanwhile. A
    dependency not in the database is one of this group's or batch's own jobs, committed with it."""
    dependencies = [(dep, known[dep].status if dep in known else None) for dep in submission.depends_on]
    run_at = submission.run_at.timestamp() if submission.run_at is not None else None
    return first_status(dependencies, run_at, now)


_payload_json = msgspec.json.Encoder()


def _row(item: _Pending, status: Status, error: str | None, default_timeout: float) -> JobRow:
    return job_row(item.submission, item.job_id, status, error, item.digest, default_timeout)


def job_row(
    s: JobSubmission,
    job_id: str,
    status: Status,
    error: str | None,
    digest: bytes,
    default_timeout: float,
    schedule_id: str | None = None,
) -> JobRow:
    """The row of a job to insert: from a submission, or from a schedule's job at a tick."""
    retry = s.retry_config
    return JobRow(
        job_id=job_id,
        type=s.type,
        priority=s.priority.value,
        status=status.value,
        payload=_payload_json.encode(s.payload).decode(),
        cpu_units=s.resource_requirements.cpu_units,
        memory_mb=s.resource_requirements.memory_mb,
        depends_on=_payload_json.encode(s.depends_on).decode(),
        timeout_seconds=s.timeout_seconds if s.timeout_seconds is not None else default_timeout,
        max_attempts=retry.max_attempts,
        backoff_multiplier=retry.backoff_multiplier,
        initial_delay_seconds=retry.initial_delay_seconds,
        max_delay_seconds=retry.max_delay_seconds,
        jitter=retry.jitter,
        run_at=s.run_at.astimezone(UTC) if s.run_at is not None else None,
        error=error,
        request_hash=digest,
        schedule_id=schedule_id,
    )


def _new_job(item: _Pending, row: JobRow, seq: int, created_at: float) -> NewJob:
    return new_job(item.submission, row, seq, created_at)


def new_job(s: JobSubmission, row: JobRow, seq: int, created_at: float) -> NewJob:
    """What the scheduler is told of a job just committed."""
    return NewJob(
        job_id=row.job_id,
        type=s.type,
        seq=seq,
        priority=s.priority.level,
        cpu_units=row.cpu_units,
        memory_mb=row.memory_mb,
        depends_on=list(s.depends_on),
        status=Status(row.status),
        created_at=created_at,
        run_at=s.run_at.timestamp() if s.run_at is not None else None,
        timeout_seconds=row.timeout_seconds,
        retry=s.retry_config.policy(),
    )


def timestamp(value: datetime | float | None) -> str | None:
    """ISO-8601 UTC with a Z, millisecond precision: the one timestamp format of the API."""
    if value is None:
        return None
    if isinstance(value, float | int):
        return _epoch_timestamp(float(value))
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=1024)
def _epoch_timestamp(value: float) -> str:
    # Every job of a batch (and of a group commit) shares one created_at: format it once.
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
