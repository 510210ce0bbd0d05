"""Every client call, written once, as a generator of effects (sans-IO).

A call yields what it needs done (`Send` an HTTP request, `Sleep`, `Open`/`Receive`/`Close` a WebSocket)
and is sent back the outcome; iterators also yield `Emit(item)` for each item they produce. `Client` and
`AsyncClient` are only two small interpreters of these effects (httpx.Client and websockets' threading
client, httpx.AsyncClient and websockets' asyncio client), so the sync and async clients cannot drift:
retries, paging, `wait` and the stream's resume logic exist once, here.

Outcomes are values, never exceptions thrown into the generator: a transport failure comes back as
`Unreachable`, a refused WebSocket handshake as `Rejected`, a closed socket as `Closed`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import msgspec

from .dag import job_spec
from .errors import ConnectionFailed, Invalid, error_from_response
from .models import (
    Accepted,
    Event,
    Gap,
    Job,
    JobSpec,
    LogLine,
    Schedule,
    Stats,
    TypeControls,
    _Batch,
    _Kind,
    _Page,
)
from .retrying import Backoff, should_retry

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class Send:
    """Answered with a `Response` or `Unreachable`."""

    method: str
    path: str
    params: Mapping[str, str | int] | None = None
    body: bytes | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Unreachable:
    reason: str


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Open:
    """Answered with a connection handle, `Rejected` or `Unreachable`."""

    url: str


@dataclass(frozen=True)
class Rejected:
    """The WebSocket handshake got an HTTP answer instead of 101 (401, 403, a proxy's 502...)."""

    response: Response


@dataclass(frozen=True)
class Receive:
    """Answered with the message text, `Closed`, or `TIMED_OUT` after `timeout` seconds."""

    connection: Any
    timeout: float | None


@dataclass(frozen=True)
class Closed:
    code: int
    reason: str


TIMED_OUT = object()


@dataclass(frozen=True)
class Close:
    connection: Any


@dataclass(frozen=True)
class Emit(Generic[T]):
    item: T


Effect = Send | Sleep | Open | Receive | Close
Program = Generator[Effect, Any, T]
Items = Generator["Effect | Emit[T]", Any, None]

# ------------------------------------------------------------------------------------------------ calls

_job = msgspec.json.Decoder(Job)
_page = msgspec.json.Decoder(_Page)
_batch = msgspec.json.Decoder(_Batch)
_logs = msgspec.json.Decoder(list[LogLine])
_stats = msgspec.json.Decoder(Stats)
_explain = msgspec.json.Decoder(dict[str, Any])
_kind = msgspec.json.Decoder(_Kind)
_event = msgspec.json.Decoder(Event)
_gap = msgspec.json.Decoder(Gap)
_schedule = msgspec.json.Decoder(Schedule)
_schedules = msgspec.json.Decoder(list[Schedule])
_job_type = msgspec.json.Decoder(TypeControls)
_job_types = msgspec.json.Decoder(list[TypeControls])
_JSON = {"Content-Type": "application/json"}
_encode = msgspec.json.Encoder().encode

LOG_PAGE = 1000  # the API's largest logs page
POLL_INITIAL, POLL_CAP = 0.05, 2.0  # polling backoff (wait without a stream, logs follow)
RECHECK_SECONDS = 15.0  # wait: re-read the job this often even while the stream is quiet
SLOW_CONSUMER = 1008
# 1008 also answers a bad filter (unknown status, bad after): a caller's error, not a reason to resume.
_REFUSED_FILTER = ("unknown status", "after must be")


def _json_type(response: Response, decoder: msgspec.json.Decoder[T]) -> T:
    return decoder.decode(response.body)


class Calls:
    """The request logic shared by `Client` and `AsyncClient`."""

    def __init__(self, url: str, api_key: str | None, backoff: Backoff) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.base_url = urlunsplit(parts)
        self.ws_url = urlunsplit(("wss" if parts.scheme == "https" else "ws", *parts[1:]))
        self.api_key = api_key
        self.backoff = backoff
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.random = random.random

    # --- plumbing ------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | None] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
    ) -> Program[Response]:
        """One call, retried while `should_retry` and the backoff allow; a non-2xx answer raises its
        typed error."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        send = Send(method, path, query or None, body, headers)
        started = time.monotonic()
        attempt = 0
        while True:
            outcome = yield send
            status = outcome.status if isinstance(outcome, Response) else None
            if isinstance(outcome, Response) and status is not None and status < 400:
                return outcome
            if should_retry(status, idempotent):
                retry_after = None
                if isinstance(outcome, Response):
                    retry_after = error_from_response(outcome.status, outcome.headers, outcome.body).retry_after
                delay = self.backoff.delay(attempt, time.monotonic() - started, retry_after, self.random())
                if delay is not None:
                    yield Sleep(delay)
                    attempt += 1
                    continue
            if isinstance(outcome, Unreachable):
                raise ConnectionFailed(None, "Connection failed", f"{method} {self.base_url}{path}: {outcome.reason}")
            raise error_from_response(outcome.status, outcome.headers, outcome.body)

    def _path(self, job_id: str) -> str:
        return f"/jobs/{quote(job_id, safe='')}"

    # --- jobs ----------------------------------------------------------------------------------------

    def submit(self, spec: JobSpec, idempotency_key: str | None) -> Program[Job]:
        headers = {"Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        idempotent = spec.job_id is not None or idempotency_key is not None
        response = yield from self.request("POST", "/jobs", body=_encode(spec), headers=headers, idempotent=idempotent)
        return _json_type(response, _job)

    def submit_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> Program[list[Accepted]]:
        specs = [j if isinstance(j, JobSpec) else job_spec(**j) for j in jobs]
        body = _encode({"jobs": specs})
        idempotent = all(s.job_id is not None for s in specs)
        headers = {"Content-Type": "application/json"}
        response = yield from self.request("POST", "/jobs/batch", body=body, headers=headers, idempotent=idempotent)
        return _json_type(response, _batch).jobs

    def get(self, job_id: str) -> Program[Job]:
        response = yield from self.request("GET", self._path(job_id), idempotent=True)
        return _json_type(response, _job)

    def cancel(self, job_id: str) -> Program[Job]:
        # Not retried: a cancel that went through but lost its answer would come back as a 409.
        response = yield from self.request("PATCH", f"{self._path(job_id)}/cancel", idempotent=False)
        return _json_type(response, _job)

    def retry(self, job_id: str) -> Program[Job]:
        response = yield from self.request("POST", f"{self._path(job_id)}/retry", idempotent=False)
        return _json_type(response, _job)

    def explain(self, job_id: str) -> Program[dict[str, Any]]:
        response = yield from self.request("GET", f"{self._path(job_id)}/explain", idempotent=True)
        return _json_type(response, _explain)

    def stats(self) -> Program[Stats]:
        response = yield from self.request("GET", "/stats", idempotent=True)
        return _json_type(response, _stats)

    # --- schedules and type controls --------------------------------------------------------------------

    def create_schedule(self, body: Mapping[str, Any]) -> Program[Schedule]:
        # Not retried: a create that went through but lost its answer would come back as a 409.
        response = yield from self.request("POST", "/schedules", body=_encode(body), headers=_JSON, idempotent=False)
        return _json_type(response, _schedule)

    def schedule(self, schedule_id: str) -> Program[Schedule]:
        response = yield from self.request("GET", f"/schedules/{quote(schedule_id, safe='')}", idempotent=True)
        return _json_type(response, _schedule)

    def schedules(self) -> Program[list[Schedule]]:
        response = yield from self.request("GET", "/schedules", idempotent=True)
        return _json_type(response, _schedules)

    def update_schedule(self, schedule_id: str, changes: Mapping[str, Any]) -> Program[Schedule]:
        path = f"/schedules/{quote(schedule_id, safe='')}"
        # Setting the same fields twice leaves the same schedule: safe to retry.
        response = yield from self.request("PATCH", path, body=_encode(changes), headers=_JSON, idempotent=True)
        return _json_type(response, _schedule)

    def delete_schedule(self, schedule_id: str) -> Program[None]:
        yield from self.request("DELETE", f"/schedules/{quote(schedule_id, safe='')}", idempotent=False)

    def types(self) -> Program[list[TypeControls]]:
        response = yield from self.request("GET", "/types", idempotent=True)
        return _json_type(response, _job_types)

    def set_type(self, job_type: str, changes: Mapping[str, Any]) -> Program[TypeControls]:
        path = f"/types/{quote(job_type, safe='')}"
        response = yield from self.request("PATCH", path, body=_encode(changes), headers=_JSON, idempotent=True)
        return _json_type(response, _job_type)

    def pages(self, path: str, params: Mapping[str, str | int | None]) -> Items[Job]:
        """Every job of a keyset-paginated listing, following `next_cursor` page by page."""
        cursor: str | None = None
        while True:
            response = yield from self.request("GET", path, params={**params, "cursor": cursor}, idempotent=True)
            page = _json_type(response, _page)
            for job in page.items:
                yield Emit(job)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def list(self, status: str | None, type: str | None, priority: str | None, page_size: int) -> Items[Job]:
        return self.pages("/jobs", {"status": status, "type": type, "priority": priority, "limit": page_size})

    def dlq(self, type: str | None, page_size: int) -> Items[Job]:
        return self.pages("/dlq", {"type": type, "limit": page_size})

    def logs(self, job_id: str, follow: bool) -> Items[LogLine]:
        """The job's log lines in order. `follow`: keep polling for new lines (with backoff while there
        are none) until the job is terminal, then read once more for lines written as it finished."""
        after = 0
        delay = POLL_INITIAL
        finished = False
        while True:
            response = yield from self.request(
                "GET", f"{self._path(job_id)}/logs", params={"after": after, "limit": LOG_PAGE}, idempotent=True
            )
            lines = _json_type(response, _logs)
            for line in lines:
                yield Emit(line)
                after = line.id
            if len(lines) == LOG_PAGE:
                continue  # more are waiting: no pause, no status check
            if not follow or finished:
                return
            if lines:
                delay = POLL_INITIAL
            job = yield from self.get(job_id)
            if job.terminal:
                finished = True  # one more read: the last lines may have landed after the one above
                continue
            yield Sleep(delay)
            delay = min(POLL_CAP, delay * 2)

    # --- stream and wait -----------------------------------------------------------------------------

    def stream_url(self, **query: str | int | None) -> str:
        params = {k: v for k, v in query.items() if v is not None}
        if self.api_key:
            params["token"] = self.api_key  # a WebSocket handshake from a browser cannot carry headers
        return f"{self.ws_url}/jobs/stream" + (f"?{urlencode(params)}" if params else "")

    def _open(self, url: str) -> Program[Any]:
        """A connected socket, or None when the stream cannot be reached; a refusal with a problem
        (401, 403) raises it: reconnecting cannot fix a key."""
        connection = yield Open(url)
        if isinstance(connection, Rejected):
            r = connection.response
            if r.status in (400, 401, 403, 404, 422):
                raise error_from_response(r.status, r.headers, r.body)
            return None
        if isinstance(connection, Unreachable):
            return None
        return connection

    def stream(self, job_id: str | None, type: str | None, status: str | None, after: int | None) -> Items[Event | Gap]:
        """Events as they are committed. After any disconnect (the service's 1008 slow-consumer close,
        a restart's 1012, a dropped connection) it reconnects with `?after=<last seq seen>`: the server
        replays what was missed from its window, so nothing is lost or repeated. Reconnecting backs off
        and gives up (ConnectionFailed) only after the backoff's budget passes without a connection.
        (The interpreters close a socket left open when the caller stops iterating.)"""
        last = after
        failing_since: float | None = None
        attempt = 0
        while True:
            connection = yield from self._open(self.stream_url(job_id=job_id, type=type, status=status, after=last))
            while connection is not None:
                message = yield Receive(connection, None)
                if isinstance(message, Closed):
                    yield Close(connection)
                    if message.code == SLOW_CONSUMER and message.reason.startswith(_REFUSED_FILTER):
                        raise Invalid(400, "Invalid stream request", message.reason)
                    break
                if not isinstance(message, str):
                    continue
                failing_since, attempt = None, 0
                if _kind.decode(message).event == "gap":
                    yield Emit(_gap.decode(message))
                    continue
                event = _event.decode(message)
                if last is not None and event.seq <= last:
                    continue  # defensive: a resume never repeats, but never hand out one event twice
                last = event.seq
                yield Emit(event)
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            delay = self.backoff.delay(attempt, now - failing_since, None, self.random())
            if delay is None:
                raise ConnectionFailed(None, "Stream unavailable", f"{self.ws_url}/jobs/stream kept failing")
            if attempt:  # the first reconnect is immediate: a slow-consumer close is routine
                yield Sleep(delay)
            attempt += 1

    def wait(self, job_id: str, timeout: float | None) -> Program[Job]:
        """The job once terminal. It subscribes to the stream filtered by job_id first and reads the job
        second (the server subscribes a socket as it accepts it), so a change between the two cannot be
        missed; a terminal event (or a gap, or RECHECK_SECONDS of quiet) triggers a fresh read. If the
        stream cannot be opened, or closes twice in a row with nothing said, it polls with backoff
        instead. TimeoutError when `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        drops = 0
        while drops < 2:
            connection = yield from self._open(self.stream_url(job_id=job_id))
            if connection is None:
                break
            job = yield from self.get(job_id)
            while not job.terminal:
                remaining = left()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"job {job_id} is still {job.status} after {timeout}s")
                message = yield Receive(
                    connection, RECHECK_SECONDS if remaining is None else min(remaining, RECHECK_SECONDS)
                )
                if isinstance(message, Closed):
                    drops += 1
                    break
                drops = 0
                if (
                    not isinstance(message, str)
                    or _kind.decode(message).event == "gap"
                    or _event.decode(message).terminal
                ):
                    job = yield from self.get(job_id)
            yield Close(connection)
            if job.terminal:
                return job
        return (yield from self.poll(job_id, left))

    def poll(self, job_id: str, left: Callable[[], float | None]) -> Program[Job]:
        delay = POLL_INITIAL
        while True:
            job = yield from self.get(job_id)
            if job.terminal:
                return job
            remaining = left()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status}")
            yield Sleep(delay if remaining is None else min(delay, remaining))
            delay = min(POLL_CAP, delay * 2)
