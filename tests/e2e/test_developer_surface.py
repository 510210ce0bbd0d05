"""The handler API against the real service (keys on, a user handler module written with `from taskq
import ...`): per-type defaults, typed payloads checked at submit and decoded in the worker, progress and
heartbeats stored and streamed, children submitted from a handler through the API with the workers'
submit-only credential, and `defer` by reference."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import taskq

from tests.conftest import ROOT, PgServer, Service, module_service, wait_until
from tests.e2e.developer_handlers import Email, add_up, send_email

KEY = "bootstrap-secret-for-the-developer-tests-0123456789"
MODULE = "tests.e2e.developer_handlers"


@pytest.fixture(scope="module")
def keyed(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the module (every test uses job ids of its own): keys required, so that a
    handler's submissions prove the workers' own credential."""
    log = tmp_path_factory.mktemp("developer") / "service.log"
    service = Service(pg.fresh_database(), log, {"TASKQ_BOOTSTRAP_KEY": KEY, "TASKQ_HANDLERS": MODULE})
    service.http.headers["Authorization"] = f"Bearer {KEY}"
    with module_service(service):
        yield service


@pytest.fixture
def client(keyed: Service) -> Iterator[taskq.Client]:
    with taskq.Client(keyed.base_url, KEY) as c:
        yield c


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------------------------- defaults


def test_a_type_defaults_fill_only_the_fields_a_submission_leaves_out(keyed: Service) -> None:
    plain = keyed.submit(type="dev_email", job_id="defaults-plain", payload={"to": "a@example.com"})
    assert plain["priority"] == "high"
    assert plain["timeout_seconds"] == 30
    assert plain["retry_config"]["max_attempts"] == 5
    assert plain["retry_config"]["initial_delay_seconds"] == 1.0  # not declared: the server's default
    assert plain["resource_requirements"] == {"cpu_units": 1, "memory_mb": 64}

    own = keyed.submit(
        type="dev_email",
        job_id="defaults-own",
        payload={"to": "b@example.com"},
        priority="low",
        timeout_seconds=10,
        retry_config={"initial_delay_seconds": 0},
        resource_requirements={"cpu_units": 2},
    )
    assert own["priority"] == "low"
    assert own["timeout_seconds"] == 10
    # Field by field inside retry_config and resource_requirements: the submission's win, the rest default.
    assert own["retry_config"]["max_attempts"] == 5
    assert own["retry_config"]["initial_delay_seconds"] == 0
    assert own["resource_requirements"] == {"cpu_units": 2, "memory_mb": 64}
    assert keyed.job("defaults-own")["priority"] == "low"  # as stored, not only as answered


def test_a_replay_of_a_submission_with_defaults_is_the_same_job(keyed: Service) -> None:
    body = {"type": "dev_email", "job_id": "defaults-replay", "payload": {"to": "c@example.com"}}
    first = keyed.http.post("/jobs", json=body)
    again = keyed.http.post("/jobs", json=body)
    assert (first.status_code, again.status_code) == (201, 200)


# ---------------------------------------------------------------------------------------- typed payloads


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"to": 5}, "payload.to", id="wrong-type"),
        pytest.param({"subject": "hi"}, "payload.to", id="missing"),
        pytest.param({"to": "a@example.com", "cc": "b@example.com"}, "payload.cc", id="unknown-field"),
    ],
)
def test_a_payload_that_does_not_fit_the_handler_type_is_a_422_naming_the_field(
    keyed: Service, payload: dict[str, Any], field: str
) -> None:
    response = keyed.http.post("/jobs", json={"type": "dev_email", "payload": payload})
    assert response.status_code == 422
    assert problem(response)["errors"][0]["field"] == field

    batch = {"jobs": [{"type": "dev_sum", "payload": {"values": [1]}}, {"type": "dev_email", "payload": payload}]}
    response = keyed.http.post("/jobs/batch", json=batch)
    assert response.status_code == 422
    assert problem(response)["errors"][0]["field"] == f"jobs.1.{field}"


def test_typed_handlers_get_their_payload_decoded_async_and_plain_def_alike(keyed: Service) -> None:
    email = keyed.submit(type="dev_email", job_id="typed-email", payload={"to": "d@example.com"})
    total = keyed.submit(type="dev_sum", job_id="typed-sum", payload={"values": [1, 2, 39]})
    assert keyed.wait_status(email["job_id"], "succeeded")["result"] == {
        "to": "d@example.com",
        "subject": "hello",
        "kind": "Email",
    }
    assert keyed.wait_status(total["job_id"], "succeeded")["result"] == {"sum": 42, "kind": "Numbers"}


# ------------------------------------------------------------------------------------ progress, heartbeat


def test_progress_is_throttled_stored_and_streamed_and_the_last_value_is_kept(
    keyed: Service, client: taskq.Client
) -> None:
    calls = 5000
    job = client.submit("dev_progress", {"calls": calls}, job_id="progress-tight-loop")
    done = client.wait(job.job_id, timeout=30)
    assert done.status == "succeeded"
    assert done.progress is not None
    assert (done.progress.fraction, done.progress.message) == (1.0, "done")
    assert done.heartbeat_at is not None

    progress: list[taskq.Event] = []
    for event in client.stream(job_id=job.job_id, after=0):
        assert isinstance(event, taskq.Event)
        if event.event == "progress":
            progress.append(event)
        if event.terminal:
            break
    assert progress, "progress is streamed"
    assert len(progress) < calls + 1, "a tight loop's reports are throttled"
    fractions = [e.progress.fraction for e in progress if e.progress is not None]
    assert fractions == sorted(fractions)
    assert progress[-1].progress == taskq.Progress(1.0, "done")
    assert all(e.status == "running" and e.attempt == 1 for e in progress)


def test_a_heartbeat_is_stored_on_the_running_job_and_explain_shows_its_age(keyed: Service, tmp_path: Path) -> None:
    release = tmp_path / "release"
    job = keyed.submit(type="dev_heartbeat", job_id="heartbeat-1", payload={"release_file": str(release)})
    try:
        # The progress follows the heartbeat within the throttle's interval: it is held, then sent by
        # the worker's timer although the handler says nothing more.
        running = wait_until(
            lambda: (j := keyed.job(job["job_id"]))["progress"] is not None and j,
            what="the held progress to be stored",
        )
        assert running["status"] == "running"
        assert running["progress"]["fraction"] == 0.25
        assert running["progress"]["message"] == "waiting for the release file"
        assert running["heartbeat_at"] == running["progress"]["at"]
        explained = keyed.http.get(f"/jobs/{job['job_id']}/explain").json()
        assert explained["heartbeat_at"] == running["heartbeat_at"]
        assert explained["seconds_since_heartbeat"] >= 0
    finally:
        release.touch()
    keyed.wait_status(job["job_id"], "succeeded")


# ----------------------------------------------------------------------------------------------- children


def test_a_handler_submits_children_through_the_api(keyed: Service) -> None:
    parent = keyed.submit(type="dev_parent", job_id="fan-out")
    done = keyed.wait_status(parent["job_id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    ids = done["result"]
    # The n-th child's id is <parent>.<n>: a retried attempt would replay, not double, its children.
    assert (ids["free"], ids["after"], ids["deferred"]) == ("fan-out.1", "fan-out.2", "fan-out.deferred")
    assert ids["after_status"] == "blocked"  # it waits for its running parent
    assert keyed.wait_status("fan-out.1", "succeeded")["result"] == {"sum": 6, "kind": "Numbers"}
    assert keyed.wait_status("fan-out.deferred", "succeeded")["result"] == {"sum": 9, "kind": "Numbers"}
    child = keyed.wait_status("fan-out.2", "succeeded")
    assert child["depends_on"] == ["fan-out"]
    assert child["started_at"] >= done["finished_at"]
    assert child["priority"] == "high"  # the dev_email type's default


def test_the_workers_credential_may_only_submit(keyed: Service) -> None:
    job = keyed.submit(type="dev_credential")
    assert keyed.wait_status(job["job_id"], "succeeded")["result"] == {"stats": 403, "dlq": 403}


# ------------------------------------------------------------------------------------------------- defer


def test_defer_by_reference_submits_through_the_configured_client(keyed: Service) -> None:
    taskq.configure(url=keyed.base_url, api_key=KEY)
    try:
        plain = send_email.defer(to="e@example.com")
        assert (plain.type, plain.priority, plain.payload) == ("dev_email", "high", {"to": "e@example.com"})
        chosen = send_email.options(priority="low", job_id="deferred-low").defer(Email(to="f@example.com"))
        assert (chosen.job_id, chosen.priority) == ("deferred-low", "low")
        assert chosen.payload == {"to": "f@example.com", "subject": "hello"}
        later = asyncio.run(add_up.options(depends_on=["deferred-low"]).defer_async(values=[1]))
        assert later.depends_on == ["deferred-low"]
        assert later.status in ("blocked", "pending", "running", "succeeded")
        assert keyed.wait_status(later.job_id, "succeeded")["result"]["sum"] == 1
    finally:
        taskq.configure()


def test_taskq_watch_draws_a_running_jobs_progress_bar(keyed: Service, tmp_path: Path) -> None:
    """`taskq watch ID` on a terminal: the table shows the job's `ctx.progress` as a bar, its percentage
    and its message, from the stream alone."""
    release = tmp_path / "release"
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    env |= {"TASKQ_URL": keyed.base_url, "TASKQ_API_KEY": KEY, "TERM": "xterm-256color", "COLUMNS": "200"}
    watch = subprocess.Popen(
        [sys.executable, "-m", "service", "watch", "progress-on-screen"],
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    screen = bytearray()

    def read() -> str:
        while select.select([master], [], [], 0.1)[0]:
            try:
                screen.extend(os.read(master, 65536))
            except OSError:  # the child closed the terminal
                break
        return screen.decode(errors="replace")

    try:
        wait_until(lambda: "taskq watch" in read(), what="the watch's table")  # its stream is open
        keyed.submit(type="dev_heartbeat", job_id="progress-on-screen", payload={"release_file": str(release)})
        text = wait_until(
            lambda: (t := read()) and "25%" in t and t,
            what="the progress on the screen",
            detail=lambda: screen.decode(errors="replace")[-3000:],
        )
        assert "waiting" in text  # the message, however the column wraps it
    finally:
        release.touch()
        if watch.poll() is None:
            os.kill(watch.pid, signal.SIGTERM)  # this process, by its pid
        watch.wait(10)
        os.close(master)
    keyed.wait_status("progress-on-screen", "succeeded")
