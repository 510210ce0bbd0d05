"""The live event stream: `WS /jobs/stream`.

The scheduler publishes every committed status change (with a gap-free sequence number) to each API
process; the `EventHub` fans them out to subscribers, each with a bounded queue. A subscriber whose queue
overflows is a slow consumer: it is disconnected with close code 1008 and a reason, so one slow client
can never make the service's memory grow. A client that reconnects with `?after=<seq>` first receives
the events it missed from the `job_events` table (a bounded window), then the live ones, with none
repeated and none skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

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

BUFFER_EVENTS = 1000  # per subscriber; beyond this it is a slow consumer
REPLAY_PAGE = 1000
SLOW_CONSUMER_CLOSE = 1008


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
    queue: asyncio.Queue[JobEvent] = field(default_factory=lambda: asyncio.Queue(BUFFER_EVENTS))
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)


class EventHub:
    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()

    def subscribe(self, filters: Filters) -> Subscriber:
        subscriber = Subscriber(filters)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def publish(self, events: list[JobEvent]) -> None:
        for subscriber in list(self.subscribers):
            if subscriber.overflowed.is_set():
                continue
            for event in events:
                if subscriber.filters.match(event):
                    try:
                        subscriber.queue.put_nowait(event)
                    except asyncio.QueueFull:
                        subscriber.overflowed.set()
                        break


def event_json(event: JobEvent | asyncpg.Record) -> dict[str, Any]:
    body = {
        "seq": event["seq"] if isinstance(event, asyncpg.Record) else event.seq,
        "event": _get(event, "event"),
        "job_id": _get(event, "job_id"),
        "type": _get(event, "type"),
        "priority": _get(event, "priority"),
        "status": _get(event, "status"),
        "attempt": _get(event, "attempt"),
        "timestamp": timestamp(_get(event, "at")),
    }
    if _get(event, "error"):
        body["error"] = _get(event, "error")
    return body


def _get(event: JobEvent | asyncpg.Record, name: str) -> Any:
    return event[name] if isinstance(event, asyncpg.Record) else getattr(event, name)


_encode = msgspec.json.Encoder().encode


@websocket("/jobs/stream")
async def job_stream(
    socket: WebSocket[Any, Any, Any],
    job_id: str | None = None,
    type: str | None = None,
    status: str | None = None,
    after: int | None = None,
) -> None:
    """One JSON message per status change: {seq, event, job_id, type, priority, status, attempt, timestamp}
    (+ error). Filter with ?job_id=, ?type=, ?status=; resume with ?after=<last seq seen>."""
    await socket.accept()
    if status is not None and status not in Status.__members__.values():
        await socket.close(code=1008, reason=f"unknown status {status!r}")
        return
    state: State = socket.app.state
    hub: EventHub = state.hub
    filters = Filters(job_id, type, status)
    subscriber = hub.subscribe(filters)  # before the replay, so nothing falls between the two
    closed = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(socket, closed))
    try:
        last = await _replay(socket, state.pool, filters, after) if after is not None else 0
        while not closed.is_set():
            getter = asyncio.ensure_future(subscriber.queue.get())
            waits = {getter, asyncio.ensure_future(closed.wait()), asyncio.ensure_future(subscriber.overflowed.wait())}
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if subscriber.overflowed.is_set():
                log.warning("stream subscriber overflowed %d buffered events; disconnecting it", BUFFER_EVENTS)
                state.telemetry.add("taskq_stream_disconnects", reason="slow_consumer")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        socket.close(
                            code=SLOW_CONSUMER_CLOSE,
                            reason=f"slow consumer: more than {BUFFER_EVENTS} events waiting; reconnect with ?after",
                        ),
                        1.0,
                    )
                return
            if getter not in done:
                return
            event = getter.result()
            if event.seq > last:
                await socket.send_text(_encode(event_json(event)).decode())
                last = event.seq
    except WebSocketDisconnect:
        return
    finally:
        hub.unsubscribe(subscriber)
        watcher.cancel()


async def _replay(socket: WebSocket[Any, Any, Any], pool: asyncpg.Pool, filters: Filters, after: int) -> int:
    first = await gateway.first_event_seq(pool)
    if first is not None and first > after + 1:
        await socket.send_json({"event": "gap", "missed_from": after + 1, "available_from": first})
    last = after
    while True:
        rows = await gateway.events_after(pool, last, REPLAY_PAGE)
        for row in rows:
            if filters.match(JobEvent(row["seq"], 0.0, row["job_id"], row["type"], "", row["status"], "")):
                await socket.send_text(_encode(event_json(row)).decode())
            last = row["seq"]
        if len(rows) < REPLAY_PAGE:
            return last


async def _watch_disconnect(socket: WebSocket[Any, Any, Any], closed: asyncio.Event) -> None:
    with contextlib.suppress(Exception):
        while True:
            await socket.receive_data(mode="text")
    closed.set()
