"""Unit-testing handlers without a service: `run` calls a handler in-process with a `RecordingContext`,
which records what a worker's context would send (log lines, progress, heartbeats, submitted children);
`eager()` makes `defer` run handlers at once instead of submitting them.

    from taskq import testing
    from myapp.jobs import send_email

    def test_send_email() -> None:
        done = testing.run(send_email, to="a@example.com")
        assert done.result == {"sent": True}
        assert done.ctx.progress_updates[-1] == (1.0, "sent")

The payload goes through what the worker does to it (JSON, then the handler's payload type), so a
payload that would not fit raises `PayloadMismatch` here too. Exceptions from the handler propagate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import registry
from .context import JobContext
from .models import Job, JobSpec, Progress

__all__ = ["Outcome", "RecordingContext", "eager", "run", "run_async"]


class _Records(logging.Handler):
    def __init__(self, lines: list[tuple[str, str]]) -> None:
        super().__init__(logging.DEBUG)
        self._lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.append((record.levelname.lower(), self.format(record)))


class RecordingContext(JobContext):
    """A `JobContext` that records instead of sending: `logs` [(level, message)], `progress_updates`
    [(fraction, message)] (every call: no throttling here), `heartbeats` (a count), `submitted` (the
    children as `JobSpec`s, in order)."""

    def __init__(self, job_id: str = "test-job", attempt: int = 1) -> None:
        log = logging.Logger(f"taskq.testing.{job_id}", logging.DEBUG)
        log.propagate = False
        super().__init__(job_id, attempt, log)
        self.logs: list[tuple[str, str]] = []
        log.addHandler(_Records(self.logs))
        self.progress_updates: list[tuple[float, str | None]] = []
        self.heartbeats = 0
        self.submitted: list[JobSpec] = []

    def _beat(self, fraction: float | None, message: str | None) -> None:
        if fraction is None:
            self.heartbeats += 1
        else:
            self.progress_updates.append((fraction, message))

    def _send(self, spec: JobSpec) -> Job:
        self.submitted.append(spec)
        if registry.eager_runner is not None:
            return _run_eagerly(spec)
        return _accepted(spec)

    async def _send_async(self, spec: JobSpec) -> Job:
        return self._send(spec)


@dataclass(frozen=True)
class Outcome:
    """What `run` returns: the handler's result and the context it was given."""

    result: Any
    ctx: RecordingContext


def run(
    handler: Callable[..., Any],
    payload: Any = None,
    /,
    *,
    ctx: RecordingContext | None = None,
    **fields: Any,
) -> Outcome:
    """Call a handler (a `@job_type` or a plain function) with `payload` (one value, or keyword fields)
    and a RecordingContext; an `async def` handler runs to completion on an event loop of its own."""
    ctx = ctx if ctx is not None else RecordingContext()
    result = _call(handler, ctx, payload, fields)
    if inspect.isawaitable(result):
        result = _complete(result)
    return Outcome(result, ctx)


async def run_async(
    handler: Callable[..., Any],
    payload: Any = None,
    /,
    *,
    ctx: RecordingContext | None = None,
    **fields: Any,
) -> Outcome:
    """`run` from inside a running event loop (an async test)."""
    ctx = ctx if ctx is not None else RecordingContext()
    result = _call(handler, ctx, payload, fields)
    if inspect.isawaitable(result):
        result = await result
    return Outcome(result, ctx)


def _call(handler: Callable[..., Any], ctx: RecordingContext, payload: Any, fields: dict[str, Any]) -> Any:
    body = registry.payload_of(payload, fields) if payload is not None or fields else {}
    if isinstance(handler, registry.JobType):
        return handler.handler(ctx, handler.decode_payload(body))
    return handler(ctx, body)


def _complete(awaitable: Any) -> Any:
    """Run a coroutine to its end: on a new loop, or, when this thread already runs one (an eager
    `defer` inside an async handler), on a new loop in another thread."""

    async def wrapped() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrapped())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        coroutine: Coroutine[Any, Any, Any] = wrapped()
        return pool.submit(asyncio.run, coroutine).result()


# ------------------------------------------------------------------------------------------------- eager


@contextlib.contextmanager
def eager() -> Iterator[list[Job]]:
    """While active, `some_type.defer(...)` (and `ctx.submit` in handlers run by it) runs the handler at
    once, in this process, and returns the finished job: `succeeded` with its result, or `failed` with
    the error. Dependencies, `run_at`, priorities and retries are ignored: each job runs once, when it is
    deferred. Yields the list of the jobs `defer` ran, in order (the children their handlers submit run
    too, at once)."""
    ran: list[Job] = []
    previous = registry.eager_runner

    def runner(type_name: str, payload: dict[str, Any], options: dict[str, Any]) -> Job:
        job = _run_eagerly(JobSpec(type=type_name, job_id=options.get("job_id"), payload=payload))
        ran.append(job)
        return job

    registry.eager_runner = runner
    try:
        yield ran
    finally:
        registry.eager_runner = previous


def _run_eagerly(spec: JobSpec) -> Job:
    job_id = spec.job_id or f"job_{uuid.uuid4().hex}"
    registered = registry.REGISTRY.get(spec.type)
    if registered is None:
        raise LookupError(f"no handler is registered for job type {spec.type!r} (import its module first)")
    ctx = RecordingContext(job_id)
    started = datetime.now(UTC)
    try:
        result = run(registered, spec.payload or {}, ctx=ctx).result
    except Exception as exc:
        return _finished(spec, job_id, started, "failed", error=f"{type(exc).__name__}: {exc}", ctx=ctx)
    return _finished(spec, job_id, started, "succeeded", result=result, ctx=ctx)


def _finished(
    spec: JobSpec,
    job_id: str,
    started: datetime,
    status: str,
    *,
    ctx: RecordingContext,
    result: Any = None,
    error: str | None = None,
) -> Job:
    last = ctx.progress_updates[-1] if ctx.progress_updates else None
    return Job(
        job_id=job_id,
        type=spec.type,
        status=status,
        payload=spec.payload or {},
        depends_on=spec.depends_on or [],
        created_at=started,
        started_at=started,
        finished_at=datetime.now(UTC),
        attempt_count=1,
        result=result,
        error=error,
        progress=Progress(last[0], last[1]) if last is not None else None,
    )


def _accepted(spec: JobSpec) -> Job:
    """The answer a service would give to a child's submission: accepted, waiting."""
    return Job(
        job_id=spec.job_id or f"job_{uuid.uuid4().hex}",
        type=spec.type,
        status="blocked" if spec.depends_on else "pending",
        payload=spec.payload or {},
        depends_on=spec.depends_on or [],
        created_at=datetime.now(UTC),
    )
