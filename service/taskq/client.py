"""`Client` and `AsyncClient`: two interpreters of the calls in `core`, one blocking (httpx.Client,
websockets' threading client), one for asyncio (httpx.AsyncClient, websockets' asyncio client).

Each public method only hands its arguments to the one implementation in `core.Calls` and runs the
program it returns; what a call does is never written twice. Both clients keep one HTTP connection
pool, so a run of calls reuses its connections: close the client (or use it as a context manager).
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx
import msgspec
import websockets.asyncio.client as ws_async
import websockets.exceptions as ws_errors
import websockets.sync.client as ws_sync

from . import core
from .dag import DagBuilder, job_spec
from .models import Accepted, Event, Gap, Job, JobSpec, LogLine, Resources, RetryConfig, Schedule, Stats, TypeControls
from .retrying import Backoff

T = TypeVar("T")
USER_AGENT = "taskq-python/0.1.0"


def _response(response: httpx.Response) -> core.Response:
    return core.Response(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)


def _closed(exc: ws_errors.ConnectionClosed) -> core.Closed:
    frame = exc.rcvd
    return core.Closed(frame.code, frame.reason) if frame is not None else core.Closed(1006, "connection lost")


def _refused(exc: Exception) -> core.Rejected | core.Unreachable:
    if isinstance(exc, ws_errors.InvalidStatus):
        r = exc.response
        headers = {k.lower(): v for k, v in r.headers.raw_items()}
        return core.Rejected(core.Response(r.status_code, headers, bytes(r.body or b"")))
    return core.Unreachable(str(exc) or type(exc).__name__)


_OPEN_FAILURES = (OSError, TimeoutError, ws_errors.InvalidHandshake, ws_errors.InvalidURI)


class _Submits:
    """The argument handling both clients share (turning keyword arguments into a `JobSpec`)."""

    _calls: core.Calls

    @staticmethod
    def _spec(
        type: str,
        payload: dict[str, Any] | None,
        job_id: str | None,
        priority: str | None,
        resources: Resources | dict[str, int] | None,
        depends_on: Iterable[str | JobSpec] | None,
        retry: RetryConfig | dict[str, Any] | None,
        timeout: float | None,
        run_at: datetime | None,
    ) -> JobSpec:
        return job_spec(
            type,
            payload,
            job_id=job_id,
            priority=priority,
            resources=resources,
            depends_on=depends_on,
            retry=retry,
            timeout=timeout,
            run_at=run_at,
        )

    @staticmethod
    def _schedule_body(
        schedule_id: str,
        cron: str,
        type: str,
        payload: dict[str, Any] | None,
        options: dict[str, Any],
        job: dict[str, Any],
    ) -> dict[str, Any]:
        """POST /schedules' body: `options` are the schedule's (timezone, overlap, catch_up, paused), `job`
        the keyword arguments of `submit` that a schedule's job may have."""
        spec = job_spec(type, payload, **job)
        given = {name: value for name, value in options.items() if value is not None}
        return {"schedule_id": schedule_id, "cron": cron, "job": msgspec.to_builtins(spec), **given}


class Client(_Submits):
    """The blocking client. `url` is the service's base URL; `api_key` is sent as `Authorization:
    Bearer` (and as `?token=` on the stream); `timeout` bounds each request; `retry_for` bounds the
    total time spent retrying an idempotent call (0 turns retries off)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 10.0,
        *,
        retry_for: float = 20.0,
    ) -> None:
        self._calls = core.Calls(url, api_key, Backoff(budget=retry_for))
        self._timeout = timeout
        headers = {"User-Agent": USER_AGENT, **self._calls.headers}
        self._http = httpx.Client(base_url=self._calls.base_url, timeout=timeout, headers=headers)

    # --- the interpreter -----------------------------------------------------------------------------

    def _perform(self, effect: core.Effect, sockets: builtins.list[Any]) -> Any:
        if isinstance(effect, core.Send):
            try:
                return _response(
                    self._http.request(
                        effect.method, effect.path, params=effect.params, content=effect.body, headers=effect.headers
                    )
                )
            except httpx.TransportError as exc:
                return core.Unreachable(str(exc) or type(exc).__name__)
        if isinstance(effect, core.Sleep):
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, core.Open):
            try:
                # Entered as a context manager: websockets 17.1 deprecates a bare connect() call.
                socket = ws_sync.connect(
                    effect.url, open_timeout=self._timeout, user_agent_header=USER_AGENT, proxy=None
                ).__enter__()
            except ws_errors.InvalidStatus as exc:
                return _refused(exc)
            except _OPEN_FAILURES as exc:
                return _refused(exc)
            sockets.append(socket)
            return socket
        if isinstance(effect, core.Receive):
            try:
                message = effect.connection.recv(timeout=effect.timeout)
            except TimeoutError:
                return core.TIMED_OUT
            except ws_errors.ConnectionClosed as exc:
                return _closed(exc)
            return message if isinstance(message, str) else message.decode()
        effect.connection.close()
        sockets.remove(effect.connection)
        return None

    def _run(self, program: core.Program[T]) -> T:
        sockets: builtins.list[Any] = []
        try:
            outcome = None
            while True:
                try:
                    effect = program.send(outcome)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
                outcome = self._perform(effect, sockets)
        finally:
            program.close()
            for socket in sockets:
                socket.close()

    def _iterate(self, program: core.Items[T]) -> Iterator[T]:
        sockets: builtins.list[Any] = []
        try:
            outcome = None
            while True:
                try:
                    effect = program.send(outcome)
                except StopIteration:
                    return
                if isinstance(effect, core.Emit):
                    outcome = None
                    yield effect.item
                else:
                    outcome = self._perform(effect, sockets)
        finally:
            program.close()
            for socket in sockets:
                socket.close()

    # --- the API -------------------------------------------------------------------------------------

    def submit(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        job_id: str | None = None,
        priority: str | None = None,
        resources: Resources | dict[str, int] | None = None,
        depends_on: Iterable[str | JobSpec] | None = None,
        retry: RetryConfig | dict[str, Any] | None = None,
        timeout: float | None = None,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit one job. Retried on 429/503/connection errors only if it has a job_id or an
        idempotency_key: without one, a retry could create the job twice."""
        spec = self._spec(type, payload, job_id, priority, resources, depends_on, retry, timeout, run_at)
        return self._run(self._calls.submit(spec, idempotency_key))

    def submit_spec(self, spec: JobSpec, idempotency_key: str | None = None) -> Job:
        """Submit a prepared `JobSpec` (as `taskq.dag.job_spec` or a handler's `ctx.submit` builds it)."""
        return self._run(self._calls.submit(spec, idempotency_key))

    def submit_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> builtins.list[Accepted]:
        """Submit a batch (all or nothing); jobs are `JobSpec`s or dicts of `submit`'s keyword arguments."""
        return self._run(self._calls.submit_many(jobs))

    def dag(self) -> Dag:
        return Dag(self)

    def get(self, job_id: str) -> Job:
        return self._run(self._calls.get(job_id))

    def list(
        self, status: str | None = None, type: str | None = None, priority: str | None = None, page_size: int = 50
    ) -> Iterator[Job]:
        """Every matching job, newest first, fetched a page at a time as you iterate."""
        return self._iterate(self._calls.list(status, type, priority, page_size))

    def cancel(self, job_id: str) -> Job:
        return self._run(self._calls.cancel(job_id))

    def retry(self, job_id: str) -> Job:
        """Re-drive a failed job (and its upstream_failed descendants)."""
        return self._run(self._calls.retry(job_id))

    def logs(self, job_id: str, follow: bool = False) -> Iterator[LogLine]:
        return self._iterate(self._calls.logs(job_id, follow))

    def explain(self, job_id: str) -> dict[str, Any]:
        return self._run(self._calls.explain(job_id))

    def stats(self) -> Stats:
        return self._run(self._calls.stats())

    def dlq(self, type: str | None = None, page_size: int = 50) -> Iterator[Job]:
        return self._iterate(self._calls.dlq(type, page_size))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        return self._run(self._calls.wait(job_id, timeout))

    def stream(
        self, job_id: str | None = None, type: str | None = None, status: str | None = None, after: int | None = None
    ) -> Iterator[Event | Gap]:
        return self._iterate(self._calls.stream(job_id, type, status, after))

    # --- schedules and type controls ----------------------------------------------------------------

    def create_schedule(
        self,
        schedule_id: str,
        cron: str,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        timezone: str | None = None,
        overlap: str | None = None,
        catch_up: str | None = None,
        paused: bool | None = None,
        **job: Any,
    ) -> Schedule:
        """A cron schedule submitting a `type` job at every tick of `cron` (five fields, a seconds field
        first in six, or @hourly/@daily/@weekly/@monthly/@yearly) in `timezone`. `job` takes `submit`'s
        priority, resources, retry and timeout."""
        options = {"timezone": timezone, "overlap": overlap, "catch_up": catch_up, "paused": paused}
        return self._run(
            self._calls.create_schedule(self._schedule_body(schedule_id, cron, type, payload, options, job))
        )

    def schedule(self, schedule_id: str) -> Schedule:
        return self._run(self._calls.schedule(schedule_id))

    def schedules(self) -> builtins.list[Schedule]:
        return self._run(self._calls.schedules())

    def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change any of cron, timezone, job (a dict), overlap, catch_up, paused."""
        return self._run(self._calls.update_schedule(schedule_id, changes))

    def pause_schedule(self, schedule_id: str) -> Schedule:
        return self.update_schedule(schedule_id, paused=True)

    def resume_schedule(self, schedule_id: str) -> Schedule:
        """Resumes from now: ticks of the paused time are not caught up."""
        return self.update_schedule(schedule_id, paused=False)

    def delete_schedule(self, schedule_id: str) -> None:
        self._run(self._calls.delete_schedule(schedule_id))

    def types(self) -> builtins.list[TypeControls]:
        return self._run(self._calls.types())

    def set_type(self, job_type: str, **controls: Any) -> TypeControls:
        """Set any of paused, max_running, max_starts_per_second (None lifts a limit); the others stay."""
        return self._run(self._calls.set_type(job_type, controls))

    def pause_type(self, job_type: str) -> TypeControls:
        return self.set_type(job_type, paused=True)

    def resume_type(self, job_type: str) -> TypeControls:
        return self.set_type(job_type, paused=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Submits):
    """The asyncio client: `Client`'s methods, awaited (`list`, `logs`, `dlq` and `stream` are async
    iterators)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 10.0,
        *,
        retry_for: float = 20.0,
    ) -> None:
        self._calls = core.Calls(url, api_key, Backoff(budget=retry_for))
        self._timeout = timeout
        headers = {"User-Agent": USER_AGENT, **self._calls.headers}
        self._http = httpx.AsyncClient(base_url=self._calls.base_url, timeout=timeout, headers=headers)

    # --- the interpreter -----------------------------------------------------------------------------

    async def _perform(self, effect: core.Effect, sockets: builtins.list[Any]) -> Any:
        if isinstance(effect, core.Send):
            try:
                return _response(
                    await self._http.request(
                        effect.method, effect.path, params=effect.params, content=effect.body, headers=effect.headers
                    )
                )
            except httpx.TransportError as exc:
                return core.Unreachable(str(exc) or type(exc).__name__)
        if isinstance(effect, core.Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        if isinstance(effect, core.Open):
            try:
                socket = await ws_async.connect(
                    effect.url, open_timeout=self._timeout, user_agent_header=USER_AGENT, proxy=None
                )
            except _OPEN_FAILURES as exc:
                return _refused(exc)
            sockets.append(socket)
            return socket
        if isinstance(effect, core.Receive):
            try:
                # websockets' asyncio recv() is safe to cancel: a timeout loses no message.
                message = await asyncio.wait_for(effect.connection.recv(), effect.timeout)
            except TimeoutError:
                return core.TIMED_OUT
            except ws_errors.ConnectionClosed as exc:
                return _closed(exc)
            return message if isinstance(message, str) else message.decode()
        await effect.connection.close()
        sockets.remove(effect.connection)
        return None

    async def _run(self, program: core.Program[T]) -> T:
        sockets: builtins.list[Any] = []
        try:
            outcome = None
            while True:
                try:
                    effect = program.send(outcome)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
                outcome = await self._perform(effect, sockets)
        finally:
            program.close()
            for socket in sockets:
                await socket.close()

    async def _iterate(self, program: core.Items[T]) -> AsyncIterator[T]:
        sockets: builtins.list[Any] = []
        try:
            outcome = None
            while True:
                try:
                    effect = program.send(outcome)
                except StopIteration:
                    return
                if isinstance(effect, core.Emit):
                    outcome = None
                    yield effect.item
                else:
                    outcome = await self._perform(effect, sockets)
        finally:
            program.close()
            for socket in sockets:
                await socket.close()

    # --- the API -------------------------------------------------------------------------------------

    async def submit(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        job_id: str | None = None,
        priority: str | None = None,
        resources: Resources | dict[str, int] | None = None,
        depends_on: Iterable[str | JobSpec] | None = None,
        retry: RetryConfig | dict[str, Any] | None = None,
        timeout: float | None = None,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """See `Client.submit`."""
        spec = self._spec(type, payload, job_id, priority, resources, depends_on, retry, timeout, run_at)
        return await self._run(self._calls.submit(spec, idempotency_key))

    async def submit_spec(self, spec: JobSpec, idempotency_key: str | None = None) -> Job:
        """See `Client.submit_spec`."""
        return await self._run(self._calls.submit(spec, idempotency_key))

    async def submit_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> builtins.list[Accepted]:
        return await self._run(self._calls.submit_many(jobs))

    def dag(self) -> AsyncDag:
        return AsyncDag(self)

    async def get(self, job_id: str) -> Job:
        return await self._run(self._calls.get(job_id))

    def list(
        self, status: str | None = None, type: str | None = None, priority: str | None = None, page_size: int = 50
    ) -> AsyncIterator[Job]:
        return self._iterate(self._calls.list(status, type, priority, page_size))

    async def cancel(self, job_id: str) -> Job:
        return await self._run(self._calls.cancel(job_id))

    async def retry(self, job_id: str) -> Job:
        return await self._run(self._calls.retry(job_id))

    def logs(self, job_id: str, follow: bool = False) -> AsyncIterator[LogLine]:
        return self._iterate(self._calls.logs(job_id, follow))

    async def explain(self, job_id: str) -> dict[str, Any]:
        return await self._run(self._calls.explain(job_id))

    async def stats(self) -> Stats:
        return await self._run(self._calls.stats())

    def dlq(self, type: str | None = None, page_size: int = 50) -> AsyncIterator[Job]:
        return self._iterate(self._calls.dlq(type, page_size))

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        return await self._run(self._calls.wait(job_id, timeout))

    def stream(
        self, job_id: str | None = None, type: str | None = None, status: str | None = None, after: int | None = None
    ) -> AsyncIterator[Event | Gap]:
        return self._iterate(self._calls.stream(job_id, type, status, after))

    # --- schedules and type controls ----------------------------------------------------------------

    async def create_schedule(
        self,
        schedule_id: str,
        cron: str,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        timezone: str | None = None,
        overlap: str | None = None,
        catch_up: str | None = None,
        paused: bool | None = None,
        **job: Any,
    ) -> Schedule:
        """See `Client.create_schedule`."""
        options = {"timezone": timezone, "overlap": overlap, "catch_up": catch_up, "paused": paused}
        body = self._schedule_body(schedule_id, cron, type, payload, options, job)
        return await self._run(self._calls.create_schedule(body))

    async def schedule(self, schedule_id: str) -> Schedule:
        return await self._run(self._calls.schedule(schedule_id))

    async def schedules(self) -> builtins.list[Schedule]:
        return await self._run(self._calls.schedules())

    async def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        return await self._run(self._calls.update_schedule(schedule_id, changes))

    async def pause_schedule(self, schedule_id: str) -> Schedule:
        return await self.update_schedule(schedule_id, paused=True)

    async def resume_schedule(self, schedule_id: str) -> Schedule:
        return await self.update_schedule(schedule_id, paused=False)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._run(self._calls.delete_schedule(schedule_id))

    async def types(self) -> builtins.list[TypeControls]:
        return await self._run(self._calls.types())

    async def set_type(self, job_type: str, **controls: Any) -> TypeControls:
        return await self._run(self._calls.set_type(job_type, controls))

    async def pause_type(self, job_type: str) -> TypeControls:
        return await self.set_type(job_type, paused=True)

    async def resume_type(self, job_type: str) -> TypeControls:
        return await self.set_type(job_type, paused=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Dag(DagBuilder):
    """`client.dag()`: add jobs with `add` (each gets an id now, so later jobs can depend on it), then
    `submit()` them as one batch."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self._client = client

    def submit(self) -> list[Accepted]:
        return self._client.submit_many(self.jobs)


class AsyncDag(DagBuilder):
    def __init__(self, client: AsyncClient) -> None:
        super().__init__()
        self._client = client

    async def submit(self) -> list[Accepted]:
        return await self._client.submit_many(self.jobs)
