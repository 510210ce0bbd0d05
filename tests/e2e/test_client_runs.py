"""The Python client with jobs that really run: each test has its own service (function scope), since
workers start. Both clients are driven where the behaviour differs by interpreter (`kind`)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import taskq
import websockets.sync.client

from tests.conftest import Service, wait_until
from tests.e2e.client_kinds import make_client

LATER = datetime(2999, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_jobs_run_wait_follow_logs_and_a_failed_job_is_redriven_from_the_dlq(service: Service, kind: str) -> None:
    client, close = make_client(kind, service.base_url)
    try:
        dag = client.dag()
        parent = dag.add("quick_task", {"print_lines": 2})
        child = dag.add("quick_task", depends_on=[parent])
        dag.submit()
        done = client.wait(child.job_id, timeout=30)
        assert done.status == "succeeded"
        first = client.get(parent.job_id)
        assert first.finished_at is not None
        assert done.started_at is not None
        assert first.finished_at <= done.started_at  # the child ran after its parent

        lines = list(client.logs(parent.job_id, follow=True))  # ends: the job is terminal
        assert lines[-1].event == "succeeded"
        assert sum(line.event == "log" for line in lines) >= 2

        broken = client.submit("invalid_operation", {"error": "nope"}, job_id=f"bad-{uuid.uuid4().hex[:8]}")
        failed = client.wait(broken.job_id, timeout=30)
        assert (failed.status, failed.attempts[-1].outcome) == ("failed", "permanent_failure")
        assert broken.job_id in [job.job_id for job in client.dlq()]
        redriven = client.retry(broken.job_id)
        assert redriven.status in ("pending", "running", "failed")
        assert client.wait(broken.job_id, timeout=30).attempt_count == 2
        with pytest.raises(TimeoutError):
            client.wait(client.submit("quick_task", run_at=LATER).job_id, timeout=0.3)
    finally:
        close()


def test_logs_follow_ends_when_the_job_ends(service: Service, tmp_path: Any) -> None:
    """A job held by its release file: follow keeps reading while it runs and stops once it succeeded."""
    client, close = make_client("sync", service.base_url)
    release = tmp_path / "release"
    try:
        job = client.submit("quick_task", {"release_file": str(release), "print_lines": 1})
        seen: list[str] = []
        follow = threading.Thread(target=lambda: seen.extend(line.event for line in client.logs(job.job_id, True)))
        follow.start()
        service.wait_status(job.job_id, "running")
        release.touch()
        follow.join(30)
        assert not follow.is_alive()
        assert seen[-1] == "succeeded"
        assert "started" in seen
    finally:
        close()


def test_wait_falls_back_to_polling_when_the_stream_refuses_it(service_factory: Callable[..., Service]) -> None:
    """TASKQ_MAX_STREAM_CLIENTS=1 and a raw socket holding that one slot: the client's stream is closed
    with 1013 at once, every time, so `wait` must get its answer by polling."""
    service = service_factory(TASKQ_MAX_STREAM_CLIENTS="1").start()
    ws_url = service.base_url.replace("http", "ws") + "/jobs/stream"
    with websockets.sync.client.connect(ws_url, proxy=None) as holder:
        client, close = make_client("sync", service.base_url)
        try:
            job = client.submit("quick_task", {"duration_seconds": 0.3})
            assert client.wait(job.job_id, timeout=30).status == "succeeded"
        finally:
            close()
        holder.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_stream_resumes_after_a_slow_consumer_close_without_losing_or_repeating(
    service_factory: Callable[..., Service], kind: str
) -> None:
    """Deterministic disconnect: with TASKQ_STREAM_BUFFER_BYTES=4096 the client reads one event, then
    stalls while a 4000-job batch (one `submitted` event each, ~1 MB, more than the kernel's socket
    buffers and websockets' queue hold) is published; the next publish (one more job) finds the
    subscriber over its buffer and closes it with 1008. The client, read on, must hand out every seq
    exactly once, in order, across that close: it resumes with ?after=<last seq seen>."""
    service = service_factory(TASKQ_STREAM_BUFFER_BYTES="4096").start()
    client, close = make_client(kind, service.base_url)
    try:
        events = client.stream(type="report")
        client.submit("report", run_at=LATER)
        first = next(events)
        client.submit_many([{"type": "report", "run_at": LATER} for _ in range(4000)])
        client.submit("report", run_at=LATER)  # the publish that notices the overflow
        service.http.post("/jobs", json={"type": "report", "run_at": "2999-01-01T00:00:00Z"})
        seqs = [first.seq]
        for event in events:
            assert isinstance(event, taskq.Event)
            seqs.append(event.seq)
            if len(seqs) == 4003:
                break
        assert seqs == list(range(first.seq, first.seq + 4003))
        assert "bytes behind; disconnecting it" in service.logs()  # the 1008 close really happened
        events.close()  # closes the socket on the client's own loop, before that loop closes
    finally:
        close()


def test_submits_over_the_rate_limit_are_too_many_requests(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_RATE_LIMIT_SUBMIT="2/m:2").start()
    client, close = make_client("async", service.base_url)
    try:
        client.submit("quick_task", run_at=LATER)
        client.submit("quick_task", run_at=LATER)
        with pytest.raises(taskq.TooManyRequests) as caught:
            client.submit("quick_task", run_at=LATER)  # no id: never retried, so the 429 comes at once
        assert caught.value.status == 429
        assert caught.value.retry_after is not None
        assert caught.value.retry_after > 0
        assert "TASKQ_RATE_LIMIT_SUBMIT" in caught.value.detail
    finally:
        close()


def test_wait_returns_across_a_restart_of_the_service(service_factory: Callable[..., Service], tmp_path: Path) -> None:
    """The stream goes away with the service, reconnects fail while it is down, and `wait` carries on
    (polling, then the stream again) until the restarted service runs the job to its end."""
    first = service_factory(TASKQ_SHUTDOWN_GRACE_SECONDS="0.5").start()
    release = tmp_path / "release"
    with taskq.Client(first.base_url) as client:
        job = client.submit("long_running", {"duration_seconds": 0, "release_file": str(release)})
        outcome: dict[str, Any] = {}

        def waiter() -> None:
            try:
                outcome["job"] = client.wait(job.job_id, timeout=90)
            except BaseException as exc:  # reported by the assertion below, not lost in the thread
                outcome["error"] = exc

        thread = threading.Thread(target=waiter)
        thread.start()
        wait_until(lambda: client.get(job.job_id).status == "running", what="running")
        assert first.stop() == 0  # the grace ends first: the attempt is interrupted, the job goes back in line
        second = service_factory(first.database_url, port=first.port, TASKQ_SHUTDOWN_GRACE_SECONDS="0.5").start()
        release.touch()
        thread.join(90)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome
        done = outcome["job"]
        assert done.status == "succeeded"
        assert [a.outcome for a in done.attempts] == ["interrupted", "succeeded"]
        assert second.job(job.job_id)["status"] == "succeeded"
