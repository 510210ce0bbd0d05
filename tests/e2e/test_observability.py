"""Watching the queue: the WebSocket stream, job logs with handler output, the service's own logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psutil
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from tests.conftest import Service


def ws_url(service: Service, query: str = "") -> str:
    return f"ws://127.0.0.1:{service.port}/jobs/stream{query}"


async def collect(
    url: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 20,
    once_connected: Callable[[], Any] | None = None,
) -> list[dict[str, Any]]:
    """Messages from the stream until `until` holds; `once_connected` runs (in a thread) after the
    connection is open, so that nothing it causes can happen before the client listens."""
    received: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws:
        if once_connected is not None:
            await asyncio.to_thread(once_connected)
        deadline = time.monotonic() + timeout
        while not until(received):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"stream timed out; got {received[-5:]}"
            message = json.loads(await asyncio.wait_for(ws.recv(), remaining))
            message["_received"] = time.time()
            received.append(message)
    return received


def test_stream_delivers_every_status_change_in_order_and_quickly(service: Service) -> None:
    events = asyncio.run(
        collect(
            ws_url(service),
            lambda got: sum(e["event"] == "succeeded" for e in got) >= 10,
            once_connected=lambda: [
                service.submit(type="quick_task", payload={"fail_times": i % 2}) for i in range(10)
            ],
        )
    )
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    by_job: dict[str, list[str]] = {}
    for event in events:
        by_job.setdefault(event["job_id"], []).append(event["event"])
    for job_events in by_job.values():
        if job_events[0] == "submitted":
            assert job_events[-1] == "succeeded"
            assert job_events.index("started") < job_events.index("succeeded")
    # Every event arrives after the change it reports was committed (how soon is measured by `make bench`).
    lags = [e["_received"] - datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp() for e in events]
    assert min(lags) > -0.01  # the timestamps are PostgreSQL's, rounded to the millisecond


def test_stream_filters_and_resumes_after_a_sequence_number(service: Service) -> None:
    job = service.submit(type="report", payload={"duration_seconds": 0.01})
    service.wait_status(job["job_id"], "succeeded")
    other = service.submit(type="notification")
    service.wait_status(other["job_id"], "succeeded")
    only_one = asyncio.run(
        collect(
            ws_url(service, f"?after=0&job_id={job['job_id']}"), lambda got: got and got[-1]["event"] == "succeeded"
        )
    )
    assert {e["job_id"] for e in only_one} == {job["job_id"]}
    assert [e["event"] for e in only_one] == ["submitted", "started", "succeeded"]
    everything = asyncio.run(collect(ws_url(service, "?after=0"), lambda got: len(got) >= 6))
    resumed = asyncio.run(collect(ws_url(service, f"?after={everything[2]['seq']}"), lambda got: len(got) >= 3))
    assert [e["seq"] for e in resumed] == [e["seq"] for e in everything[3:6]]
    succeeded = asyncio.run(collect(ws_url(service, "?after=0&status=succeeded"), lambda got: len(got) >= 2))
    assert {e["status"] for e in succeeded} == {"succeeded"}


class StalledClient:
    """A WebSocket client on a raw socket with a tiny receive buffer that reads nothing until told to:
    only the kernel's buffers stand between it and the server, as with a consumer that hung."""

    def __init__(self, service: Service) -> None:
        self.sock = socket.create_connection(("127.0.0.1", service.port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.protocol = ClientProtocol(parse_uri(ws_url(service)))
        self.protocol.send_request(self.protocol.connect())
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        while not self.protocol.events_received():  # the handshake response
            self.protocol.receive_data(self.sock.recv(4096))

    def read_until_closed(self, timeout: float) -> tuple[int, str, list[int]]:
        """The close code and reason, and the seq of every event received before the close."""
        self.sock.settimeout(timeout)
        seqs: list[int] = []
        while self.protocol.close_rcvd is None:
            data = self.sock.recv(1 << 16)
            if not data:
                break
            self.protocol.receive_data(data)
            seqs += [
                json.loads(frame.data)["seq"]
                for frame in self.protocol.events_received()
                if frame.opcode.name == "TEXT"
            ]
        self.sock.close()
        close = self.protocol.close_rcvd
        return (close.code, close.reason, seqs) if close is not None else (0, "", seqs)


def metric_value(service: Service, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(service.http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_slow_stream_consumer_is_disconnected_while_a_fast_one_keeps_up(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(TASKQ_STREAM_BUFFER_BYTES=str(512 * 1024)).start()
    api = psutil.Process(service.actor_pids()["api"])
    stalled = StalledClient(service)
    # 30,000 events (~7 MB of JSON), at most 1000 (~250 KB) per scheduler turn so that bursts fit the
    # buffer: more than the kernel's socket buffers (4 MB at most on the server's side here) can hide.
    batches, per_batch = 30, 1000

    async def produce_while_reading_fast() -> tuple[int, int, tuple[int, str, list[int]]]:
        seen = 0
        closing: asyncio.Task[tuple[int, str, list[int]]] | None = None
        async with websockets.connect(ws_url(service)) as fast:

            async def read_fast() -> None:
                nonlocal seen
                while seen < batches * per_batch:
                    await asyncio.wait_for(fast.recv(), 20)
                    seen += 1

            reader = asyncio.create_task(read_fast())
            before = api.memory_info().rss
            later = "2099-01-01T00:00:00Z"  # scheduled far ahead: events without running anything
            for batch in range(1, batches + 1):
                jobs = [{"type": "quick_task", "run_at": later} for _ in range(per_batch)]
                response = await asyncio.to_thread(service.http.post, "/jobs/batch", json={"jobs": jobs})
                assert response.status_code == 201
                deadline = time.monotonic() + 20
                while seen < batch * per_batch and not reader.done():  # pace by the fast reader
                    assert time.monotonic() < deadline, f"fast reader stuck at {seen}"
                    await asyncio.sleep(0.01)
                if closing is None and metric_value(service, "taskq_stream_disconnects_total", reason="slow_consumer"):
                    # Dropped: from now on the server waits up to its close timeout for the client to take
                    # the backlog and the close frame, so the stalled client starts reading now.
                    closing = asyncio.create_task(asyncio.to_thread(stalled.read_until_closed, 20))
            await reader
            assert closing is not None, "the stalled client was never dropped"
            return seen, api.memory_info().rss - before, await closing

    seen, grown, (code, reason, got) = asyncio.run(produce_while_reading_fast())
    assert seen == batches * per_batch  # the fast reader got everything and stayed connected
    assert code == 1008
    assert "slow consumer" in reason
    assert grown < 100 * 2**20
    # The reason names the last event sent, which is the last one the client got; resuming there
    # delivers the rest, none repeated and none skipped.
    assert got == list(range(got[0], got[0] + len(got)))
    assert reason.endswith(f"?after={got[-1]}")
    remaining = batches * per_batch - len(got)
    resumed = asyncio.run(collect(ws_url(service, f"?after={got[-1]}"), lambda more: len(more) >= remaining))
    assert [e["seq"] for e in resumed] == list(range(got[-1] + 1, got[-1] + 1 + remaining))


def test_job_logs_capture_handler_stdout_and_cap_lines_per_attempt(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_MAX_LOG_LINES="5").start()
    job = service.submit(type="processing", payload={"print_lines": 20})
    service.wait_status(job["job_id"], "succeeded")
    lines = service.http.get(f"/jobs/{job['job_id']}/logs").json()
    handler = [line for line in lines if line["event"] == "log"]
    assert [line["message"] for line in handler[1:5]] == [f"stdout line {i}" for i in range(4)]
    assert handler[-1]["message"].startswith("16 more log lines dropped")
    assert len(handler) == 6
    assert all(line["attempt"] == 1 for line in handler)


def test_service_logs_are_one_json_object_per_line(service: Service) -> None:
    job = service.submit(type="quick_task")
    service.wait_status(job["job_id"], "succeeded")
    lines = [line for line in service.logs().splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"ts", "level", "actor", "msg"} <= set(record)


def test_a_burst_larger_than_the_buffer_does_not_disconnect_a_reader(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_STREAM_BUFFER_BYTES="4096").start()
    later = "2099-01-01T00:00:00Z"

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(ws_url(service)) as ws:
            jobs = [{"type": "quick_task", "run_at": later} for _ in range(300)]
            response = await asyncio.to_thread(service.http.post, "/jobs/batch", json={"jobs": jobs})
            assert response.status_code == 201
            return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(300)]

    events = asyncio.run(scenario())  # one turn, 300 events (~75 KB), a buffer of 4 KB: still all delivered
    assert {e["event"] for e in events} == {"submitted"}
    assert len({e["job_id"] for e in events}) == 300


def test_a_stream_resume_point_beyond_64_bits_or_an_unknown_status_is_closed_with_1008(shared_service: Service) -> None:
    async def close_code(query: str) -> tuple[int | None, str | None]:
        async with websockets.connect(ws_url(shared_service, query)) as ws:
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code, ws.close_reason

    for query, says in ((f"?after={2**64}", "after"), ("?status=done", "unknown status")):
        code, reason = asyncio.run(close_code(query))
        assert code == 1008, (query, code, reason)
        assert reason is not None
        assert says in reason


def test_a_large_batch_is_replayed_like_any_event(service: Service) -> None:
    # A turn with hundreds of events writes them with COPY, leaving out the columns they all hold NULL.
    jobs = [{"job_id": f"replayed-{i:03}", "type": "quick_task", "run_at": "2099-01-01T00:00:00Z"} for i in range(300)]
    assert service.http.post("/jobs/batch", json={"jobs": jobs}).status_code == 201
    replay = asyncio.run(collect(ws_url(service, "?after=0"), lambda got: len(got) >= 300))
    assert [e["job_id"] for e in replay[:300]] == [job["job_id"] for job in jobs]
    assert {(e["event"], e["status"], e.get("attempt"), e.get("error")) for e in replay[:300]} == {
        ("submitted", "scheduled", None, None)
    }
    seqs = [e["seq"] for e in replay[:300]]
    assert seqs == list(range(seqs[0], seqs[0] + 300))  # gap-free
