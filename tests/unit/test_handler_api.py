"""The handler API without a service: `@job_type` declarations, typed payloads, the worker's progress
throttle, the scheduler's latest-beat buffer, per-type defaults merged into a submission, children's ids,
and `taskq.testing` on sample handlers."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import msgspec
import pytest
import taskq
from taskq import JobContext, PermanentError, job_type, testing
from taskq.context import child_id
from taskq.registry import InvalidJobType, PayloadMismatch

from service import handlers
from service.api.job_types import merged
from service.protocol import AttemptBeat, WorkerBeat
from service.scheduler.beats import Beats
from service.store.gateway import AttemptChange
from service.supervisor.worker import BeatThrottle

# ------------------------------------------------------------------------------------------ sample types


class Invoice(msgspec.Struct):
    number: int
    customer: str


@job_type("unit_invoice", retry={"max_attempts": 7}, timeout=45, priority="low")
async def send_invoice(ctx: JobContext, payload: Invoice) -> dict[str, Any]:
    if payload.number < 0:
        raise PermanentError("negative invoice number")
    ctx.log.info("sending invoice %d", payload.number)
    ctx.heartbeat()
    for step in range(4):
        ctx.progress(step / 4, f"page {step}")
    ctx.progress(1.0, "sent")
    child = await ctx.submit_async("unit_receipt", {"number": payload.number}, depends_on_parent=True)
    return {"customer": payload.customer, "child": child.job_id, "child_status": child.status}


@dataclasses.dataclass
class Receipt:
    number: int


@job_type("unit_receipt")
def make_receipt(ctx: JobContext, payload: Receipt) -> dict[str, int]:
    ctx.submit("unit_archive", {"number": payload.number})
    return {"receipt": payload.number}


@job_type("unit_archive")
def archive(ctx: JobContext, payload: dict[str, Any]) -> str:
    return f"archived {payload['number']}"


# ------------------------------------------------------------------------------------------- declarations


def test_one_registry_and_one_error_class_under_both_import_names() -> None:
    assert handlers.job_type is taskq.job_type
    assert handlers.PermanentError is taskq.PermanentError
    assert handlers.JobContext is taskq.JobContext
    assert handlers.spec("unit_invoice") is send_invoice
    assert handlers.get("unit_invoice") is send_invoice.handler


def test_a_job_type_is_still_callable_and_knows_its_declaration() -> None:
    assert isinstance(send_invoice, taskq.JobType)
    assert send_invoice.payload_type is Invoice
    assert archive.payload_type is None  # a dict payload is taken as it is
    assert send_invoice.defaults == {"priority": "low", "timeout_seconds": 45, "retry_config": {"max_attempts": 7}}
    assert archive(testing.RecordingContext(), {"number": 3}) == "archived 3"


@pytest.mark.parametrize(
    ("declare", "words"),
    [
        pytest.param(lambda: job_type("unit_bad_priority", priority="urgent"), "priority", id="priority"),
        pytest.param(lambda: job_type("unit_bad_timeout", timeout=float("inf")), "timeout", id="timeout"),
        pytest.param(lambda: job_type("unit_bad_retry", retry={"max_tries": 3}), "retry_config", id="retry-field"),
    ],
)
def test_a_declaration_that_cannot_work_fails_at_import(declare: Any, words: str) -> None:
    with pytest.raises(InvalidJobType, match=words):
        declare()


def test_a_name_registered_twice_fails() -> None:
    def other(ctx: JobContext, payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(InvalidJobType, match="registered twice"):
        job_type("unit_invoice")(other)


def test_a_payload_that_does_not_fit_is_a_permanent_error_naming_the_field() -> None:
    assert send_invoice.decode_payload({"number": 1, "customer": "ACME"}) == Invoice(1, "ACME")
    with pytest.raises(PayloadMismatch, match=r"\$\.number") as raised:
        send_invoice.decode_payload({"number": "one", "customer": "ACME"})
    assert isinstance(raised.value, PermanentError)


# --------------------------------------------------------------------------------------------- throttle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_sends_at_most_one_beat_per_interval_and_keeps_the_last() -> None:
    clock = FakeClock()
    throttle = BeatThrottle(0.2, clock)
    assert throttle.offer(WorkerBeat(1.0, 0.1, "a")) == WorkerBeat(1.0, 0.1, "a")
    assert throttle.offer(WorkerBeat(1.1, 0.2, "b")) is None
    assert throttle.offer(WorkerBeat(1.2, 0.3, "c")) is None  # replaces b
    assert throttle.due_in() == pytest.approx(0.2)
    clock.now += 0.2
    assert throttle.offer(WorkerBeat(1.3, 0.4, "d")) == WorkerBeat(1.3, 0.4, "d")  # c was never sent: d is newer
    assert throttle.flush() is None
    assert throttle.offer(WorkerBeat(1.4, 1.0, "done")) is None
    assert throttle.flush() == WorkerBeat(1.4, 1.0, "done")  # the attempt's end: the last value goes out


def test_a_held_progress_rides_along_with_a_later_heartbeat() -> None:
    clock = FakeClock()
    throttle = BeatThrottle(0.2, clock)
    throttle.offer(WorkerBeat(1.0))
    assert throttle.offer(WorkerBeat(1.1, 0.5, "half")) is None
    assert throttle.offer(WorkerBeat(1.2)) is None
    assert throttle.flush() == WorkerBeat(1.2, 0.5, "half")


def test_the_scheduler_keeps_the_latest_beat_of_each_attempt_for_its_next_commit() -> None:
    beats = Beats()
    beats.add(AttemptBeat("j", 1, 10.0, 0.5, "half"), "t", 1)
    beats.add(AttemptBeat("j", 1, 11.0), "t", 1)  # a heartbeat keeps the progress
    beats.add(AttemptBeat("k", 2, 12.0, 0.9, None), "t", 2)
    taken = {(b.job_id, b.attempt): b for b in beats.take()}
    assert not beats
    change = AttemptChange("j", 1, pid=42)
    taken["j", 1].apply(change)
    assert (change.pid, change.heartbeat_at) == (42, 11.0)
    assert (change.progress, change.progress_message, change.progress_at) == (0.5, "half", 10.0)
    heartbeat_only = AttemptChange("x", 1)
    beats.add(AttemptBeat("x", 1, 13.0), "t", 1)
    beats.take()[0].apply(heartbeat_only)
    assert (heartbeat_only.heartbeat_at, heartbeat_only.progress_at) == (13.0, None)


# ----------------------------------------------------------------------------------------- API defaults


def test_defaults_fill_what_a_submission_leaves_out_field_by_field() -> None:
    defaults = {"priority": "low", "timeout_seconds": 45, "retry_config": {"max_attempts": 7, "jitter": 0}}
    job = {"type": "t", "priority": None, "retry_config": {"max_attempts": 2}, "timeout_seconds": 5}
    assert merged(job, defaults) == {
        "type": "t",
        "priority": "low",  # null counts as left out
        "timeout_seconds": 5,
        "retry_config": {"max_attempts": 2, "jitter": 0},
    }


def test_children_get_ids_that_a_retried_attempt_repeats_within_the_id_limit() -> None:
    assert child_id("parent", 3) == "parent.3"
    long = child_id("p" * 127, 12)
    assert long.startswith("job_")
    assert len(long) <= 128
    assert long == child_id("p" * 127, 12)


# ------------------------------------------------------------------------------------------ taskq.testing


def test_testing_runs_a_handler_in_process_and_records_what_it_said() -> None:
    done = testing.run(send_invoice, number=12, customer="ACME")
    assert done.result == {"customer": "ACME", "child": "test-job.1", "child_status": "blocked"}
    assert done.ctx.logs == [("info", "sending invoice 12")]
    assert done.ctx.heartbeats == 1
    assert done.ctx.progress_updates[-1] == (1.0, "sent")
    assert len(done.ctx.progress_updates) == 5  # every call: the test sees what the handler said
    [child] = done.ctx.submitted
    assert (child.type, child.payload, child.depends_on) == ("unit_receipt", {"number": 12}, ["test-job"])


def test_testing_raises_what_the_handler_or_the_payload_raises() -> None:
    with pytest.raises(PermanentError, match="negative"):
        testing.run(send_invoice, {"number": -1, "customer": "ACME"})
    with pytest.raises(PayloadMismatch):
        testing.run(send_invoice, {"number": 1})


def test_testing_runs_an_async_handler_from_inside_a_running_loop() -> None:
    done = asyncio.run(testing.run_async(send_invoice, Invoice(5, "Initech")))
    assert done.result["customer"] == "Initech"


def test_eager_mode_runs_deferred_jobs_and_their_children_at_once() -> None:
    with testing.eager() as ran:
        job = send_invoice.defer(number=8, customer="Umbrella")
        failed = send_invoice.options(job_id="neg").defer(number=-8, customer="Umbrella")
    assert job.status == "succeeded"
    assert job.result["child_status"] == "succeeded"  # the receipt ran at once, and its archive child too
    assert job.progress == taskq.Progress(1.0, "sent")
    assert (failed.job_id, failed.status) == ("neg", "failed")
    assert failed.error == "PermanentError: negative invoice number"
    assert [j.status for j in ran] == ["succeeded", "failed"]


# ------------------------------------------------------------------------------------ default connection


def test_the_default_connection_is_configure_then_the_environment_then_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taskq import connection

    monkeypatch.delenv("TASKQ_URL", raising=False)
    monkeypatch.delenv("TASKQ_API_KEY", raising=False)
    assert connection.settings() == ("http://127.0.0.1:8000", None)
    monkeypatch.setenv("TASKQ_URL", "http://worker-view:9000")
    monkeypatch.setenv("TASKQ_API_KEY", "tqw_secret")
    assert connection.settings() == ("http://worker-view:9000", "tqw_secret")
    taskq.configure(url="http://configured:1", api_key="tq_configured")
    try:
        assert connection.settings() == ("http://configured:1", "tq_configured")
    finally:
        taskq.configure()
    assert connection.settings() == ("http://worker-view:9000", "tqw_secret")


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("::", "http://[::1]:8000"),
        ("::1", "http://[::1]:8000"),
        ("10.1.2.3", "http://10.1.2.3:8000"),
        ("taskq.internal", "http://taskq.internal:8000"),
    ],
)
def test_workers_reach_the_api_on_its_own_address_a_wildcard_bind_on_loopback(host: str, url: str) -> None:
    from service.worker_access import own_url

    assert own_url(host, 8000) == url
