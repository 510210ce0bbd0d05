"""The live event stream: `WS /jobs/stream`.

The scheduler publishes every committed status change (with a gap-free sequence number) to each API
process; the `EventHub` fans them out to subscribers, each with a queue bounded in bytes (each event is
encoded once, whoever receives it). A subscriber whose backlog exceeds the bound is a slow consumer: it
is disconnected with close code 1008 and a reason, so one slow client can never make the service's
memory grow. A client that reconnects with `?after=<seq>` first receives
the events it missed from the `job_events` table (a bounded window), then the live ones, with none
repeated and none skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import msgspec
from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from service.api.submit import timestamp
from service.model import Status
from service.protocol import JobEvent
from service.store import gateway

log = logging.getLogger("taskq.api.stream")
T = TypeVar("T")

# The subprotocol a browser offers beside its key (see auth.KEY_PROTOCOL): a browser fails a handshake
# whose answer selects none of the subprotocols it offered, so the service selects this one.
SUBPROTOCOL = "taskq"
REPLAY_PAGE = 1000
SLOW_CONSUMER_CLOSE = 1008
TRY_AGAIN_LATER = 1013  # RFC 6455 close code: the server is overloaded, retry later
CLOSE_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Filters:
    job_id: str | None = None
    type: str | None = None
    status: str | None = None

    def match(self, event: JobEvent) -> bool:
        return (
            (self.job_id is None or event.job_id == self.job_id)
            and (self.type is None or event.type == self.type)
            and (self.status is None or event.status == self.status)
        )


@dataclass(eq=False)
class Subscriber:
    filters: Filters
    queue: asyncio.Queue[tuple[int, str]]  # (seq, the event's JSON text)
    backlog_bytes: int = 0  # the texts queued and not yet sent
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, item: tuple[int, str]) -> tuple[int, str]:
        self.backlog_bytes -= len(item[1])
        return item


class EventHub:
    def __init__(self, buffer_bytes: int) -> None:
        self.buffer_bytes = buffer_bytes
        self.subscribers: set[Subscriber] = set()
        self.clients = 0  # stream connections being served, for TASKQ_MAX_STREAM_CLIENTS

    def subscribe(self, filters: Filters) -> Subscriber:
        subscriber = Subscriber(filters, asyncio.Queue())
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def publish(self, events: list[JobEvent]) -> None:
        """A turn's events go to every subscriber whole: a burst (a 10,000-job batch) is not slowness.
        A subscriber still holding more than `buffer_bytes` of unsent events when the next turn's arrive
        is slow: it gets nothing more and is disconnected. So its backlog stays under the bound plus one
        turn's events. The bound is in bytes, not events: what a slow client costs is memory."""
        texts: list[str | None] = [None] * len(events)  # encoded on first use, then shared
        for subscriber in list(self.subscribers):
            if subscriber.overflowed.is_set():
                continue
            if subscriber.backlog_bytes > self.buffer_bytes:
                subscriber.overflowed.set()
                continue
            for i, event in enumerate(events):
                if subscriber.filters.match(event):
                    text = texts[i]
                    if text is None:
                        text = texts[i] = event_text(event)
                    subscriber.queue.put_nowait((event.seq, text))
                    subscriber.backlog_bytes += len(text)


def event_json(event: JobEvent) -> dict[str, Any]:
    body = {
        "seq": event.seq,
        "event": event.event,
        "job_id": event.job_id,
        "type": event.type,
        "priority": event.priority,
        "status": event.status,
        "attempt": event.attempt,
        "timestamp": timestamp(event.at),
    }
    if event.error:
        body["error"] = event.error
    if event.progress is not None:
        body["progress"] = {"fraction": event.progress, "message": event.message}
    return body


_encode = msgspec.json.Encoder().encode


def event_text(event: JobEvent) -> str:
    return _encode(event_json(event)).decode()


@websocket("/jobs/stream")
async def job_stream(
    socket: WebSocket[Any, Any, Any],
    job_id: str | None = None,
    type: str | None = None,
    status: str | None = None,
    after: int | None = None,
) -> None:
    """One JSON message per status change: {seq, event, job_id, type, priority, status, attempt, timestamp}
    (+ error), and per handler progress report (event "progress", + progress {fraction, message}).
    Filter with ?job_id=, ?type=, ?status=; resume with ?after=<last seq seen>."""
    state: State = socket.app.state
    hub: EventHub = state.hub
    limit: int = state.settings.max_stream_clients
    # Each client holds up to its buffer, so their number is bounded too. The place is taken before the
    # first await: two handshakes at the same moment cannot both see the last free one.
    if hub.clients >= limit:
        await _accept(socket)
        state.telemetry.add("taskq_stream_disconnects", reason="too_many_clients")
        await socket.close(code=TRY_AGAIN_LATER, reason=f"too many stream clients (TASKQ_MAX_STREAM_CLIENTS={limit})")
        return
    hub.clients += 1
    try:
        await _serve(socket, state, hub, Filters(job_id, type, status), status, after)
    finally:
        hub.clients -= 1


async def _serve(
    socket: WebSocket[Any, Any, Any],
    state: State,
    hub: EventHub,
    filters: Filters,
    status: str | None,
    after: int | None,
) -> None:
    await _accept(socket)
    if status is not None and status not in Status.__members__.values():
        await socket.close(code=1008, reason=f"unknown status {status!r}")
        return
    if after is not None and not 0 <= after < 2**63:
        await socket.close(code=1008, reason="after must be a seq between 0 and 2^63-1")
        return
    subscriber = hub.subscribe(filters)  # before the replay, so nothing falls between the two
    closed = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(socket, closed))
    try:
        last = await _replay(socket, state.pool, filters, after) if after is not None else 0
        stop = (closed, subscriber.overflowed)
        while True:
            got, item = await _unless(subscriber.queue.get(), *stop)
            if not got:
                break
            seq, text = subscriber.take(item)
            if seq > last:
                # A send blocks while the client's socket is full: race it with the overflow as well.
                sent, _ = await _unless(socket.send_text(text), *stop)
                if not sent:
                    break
                last = seq
        if subscriber.overflowed.is_set():
            await _disconnect_slow_consumer(socket, state, hub.buffer_bytes, last)
    except WebSocketDisconnect:
        return
    finally:
        hub.unsubscribe(subscriber)
        watcher.cancel()


async def _accept(socket: WebSocket[Any, Any, Any]) -> None:
    offered = socket.scope.get("subprotocols") or ()
    await socket.accept(subprotocols=SUBPROTOCOL if SUBPROTOCOL in offered else None)


async def _unless(work: Awaitable[T], *stops: asyncio.Event) -> tuple[bool, Any]:
    """(True, `work`'s result), or (False, None) with `work` cancelled as soon as one of `stops` is set."""
    task = asyncio.ensure_future(work)
    waiters = [asyncio.ensure_future(stop.wait()) for stop in stops]
    done, _ = await asyncio.wait({task, *waiters}, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    if task in done:
        return True, task.result()
    task.cancel()
    return False, None


async def _disconnect_slow_consumer(
    socket: WebSocket[Any, Any, Any], state: State, buffer_bytes: int, last_sent: int
) -> None:
    """Close with 1008 and a reason naming where to resume. The close frame waits for room in the
    client's socket like any frame; a client that reads nothing at all is cut off without it after a
    while. (A close reason has at most 123 bytes, so this one stays short.)"""
    log.warning("stream subscriber fell over %d bytes behind; disconnecting it", buffer_bytes)
    state.telemetry.add("taskq_stream_disconnects", reason="slow_consumer")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            socket.close(
                code=SLOW_CONSUMER_CLOSE,
                reason=f"slow consumer: over {buffer_bytes} bytes behind; resume with ?after={last_sent}",
            ),
            CLOSE_TIMEOUT_SECONDS,
        )


async def _replay(socket: WebSocket[Any, Any, Any], pool: asyncpg.Pool, filters: Filters, after: int) -> int:
    first = await gateway.first_event_seq(pool)
    if first is not None and first > after + 1:
        await socket.send_json({"event": "gap", "missed_from": after + 1, "available_from": first})
    last = after
    while True:
        rows = await gateway.events_after(pool, last, REPLAY_PAGE)
        for row in rows:
            event = JobEvent(*msgspec.structs.astuple(row))  # the table's columns are the event's fields
            if filters.match(event):
                await socket.send_text(event_text(event))
            last = event.seq
        if len(rows) < REPLAY_PAGE:
            return last


async def _watch_disconnect(socket: WebSocket[Any, Any, Any], closed: asyncio.Event) -> None:
    with contextlib.suppress(Exception):
        while True:
            await socket.receive_data(mode="text")
    closed.set()
