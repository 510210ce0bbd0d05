"""The `taskq` client commands, run as the real CLI in a subprocess (`python -m service ...`) against a real
service. Most tests share one service (module scope) and look only at the jobs they submit, by unique
ids; jobs that must not run are scheduled for 2999. Streams (`watch`, `logs -f`) are read with deadlines,
and a `watch` is ended by the test through its own pid."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import queue
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import _SHARED_ROOTS, ROOT, PgServer, Service, wait_until

LATER = "2999-01-01T00:00:00Z"
KEY = "bootstrap-secret-for-the-cli-tests-0123456789abcdef"


@pytest.fixture(scope="module")
def shared(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("cli") / "service.log"
    service = Service(pg.fresh_database(), log, {}).start()
    _SHARED_ROOTS.add(service.pid)
    yield service
    _SHARED_ROOTS.discard(service.pid)
    code = service.stop()
    service.http.close()
    assert code == 0, f"taskq serve exited with {code}:\n{service.logs()}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def cli_env(url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    return {**base, "TASKQ_URL": url, **extra}


def taskq(url: str, *args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=cli_env(url, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(url: str, *args: str, **env: str) -> str:
    done = taskq(url, *args, **env)
    assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
    return done.stdout


def as_json(url: str, *args: str) -> Any:
    return json.loads(ok(url, *args, "--json"))


# ------------------------------------------------------------------------------------------- commands


def test_submit_prints_the_job_and_get_and_list_read_it_back(shared: Service) -> None:
    url, job_id = shared.base_url, unique("cli-submit")
    job = as_json(
        url, "submit", "send_email", "--job-id", job_id, "--payload", '{"to": "a@example.com"}', "--priority",
        "high", "--cpu", "2", "--mem", "256", "--timeout", "30", "--max-attempts", "5", "--run-at", LATER,
    )  # fmt: skip
    assert (job["job_id"], job["status"], job["priority"]) == (job_id, "scheduled", "high")
    assert job["resource_requirements"] == {"cpu_units": 2, "memory_mb": 256}
    assert (job["timeout_seconds"], job["retry_config"]["max_attempts"]) == (30, 5)
    assert job["run_at"].startswith("2999-01-01")

    assert as_json(url, "get", job_id)["payload"] == {"to": "a@example.com"}
    human = ok(url, "get", job_id)
    assert f"job_id:       {job_id}" in human
    assert "status:       scheduled" in human

    listed = as_json(url, "list", "--status", "scheduled")
    assert job_id in [j["job_id"] for j in listed]
    assert {j["status"] for j in listed} == {"scheduled"}
    assert len(as_json(url, "list", "--limit", "1")) == 1
    table = ok(url, "list", "--status", "scheduled").splitlines()
    assert table[0].split()[:3] == ["JOB_ID", "TYPE", "STATUS"]
    assert any(line.startswith(job_id) for line in table[1:])
    assert ok(url, "submit", "quick_task", "--run-at", LATER).split()[1] == "scheduled"


def test_submit_wait_exits_0_when_the_job_succeeds_and_1_when_it_fails(shared: Service) -> None:
    url = shared.base_url
    done = taskq(url, "submit", "quick_task", "--payload", '{"duration_seconds": 0.05}', "--wait")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split()[1] == "succeeded"

    failed_id = unique("cli-invalid")
    done = taskq(url, "submit", "invalid_operation", "--job-id", failed_id, "--wait", "--json")
    assert done.returncode == 1, done.stderr
    failed = json.loads(done.stdout)
    assert (failed["job_id"], failed["status"]) == (failed_id, "failed")
    assert "invalid operation" in failed["error"]

    assert failed_id in [j["job_id"] for j in as_json(url, "dlq", "--limit", "500")]
    assert failed_id in ok(url, "dlq")
    assert as_json(url, "explain", failed_id)["reason"].startswith("finished: failed")
    assert "finished: failed" in ok(url, "explain", failed_id)
    lines = as_json(url, "logs", failed_id)
    assert lines
    assert all({"id", "event", "message"} <= set(line) for line in lines)

    retried = as_json(url, "retry", failed_id)
    assert retried["job_id"] == failed_id
    assert retried["status"] != "failed"
    shared.wait_status(failed_id, "failed")  # it fails again: invalid_operation always does


def test_after_makes_a_blocked_job_and_cancel_ends_the_parent(shared: Service) -> None:
    url, parent, child = shared.base_url, unique("cli-parent"), unique("cli-child")
    ok(url, "submit", "data_fetch", "--job-id", parent, "--run-at", LATER)
    job = as_json(url, "submit", "report", "--job-id", child, "--after", parent)
    assert (job["status"], job["depends_on"]) == ("blocked", [parent])
    assert as_json(url, "explain", child)["waiting_on"] == [parent]

    assert as_json(url, "cancel", parent)["status"] == "cancelled"
    again = taskq(url, "cancel", parent)
    assert again.returncode == 1
    assert "409" in again.stderr
    assert "already cancelled" in again.stderr


def test_logs_follow_prints_lines_until_the_job_ends(shared: Service) -> None:
    url, job_id = shared.base_url, unique("cli-logs")
    ok(url, "submit", "quick_task", "--job-id", job_id, "--payload", '{"print_lines": 3, "duration_seconds": 0.3}')
    done = taskq(url, "logs", job_id, "--follow", "--json", timeout=30)  # returns: the job ends
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["message"] for line in lines if line["message"].startswith("stdout")] == [
        "stdout line 0",
        "stdout line 1",
        "stdout line 2",
    ]
    assert lines[-1]["event"] == "succeeded"
    assert shared.job(job_id)["status"] == "succeeded"
    human = ok(url, "logs", job_id)
    assert len(human.splitlines()) == len(lines)


def test_stats_shows_capacity(shared: Service) -> None:
    stats = as_json(shared.base_url, "stats")
    assert {"capacity", "resources_in_use", "resources_free", "jobs_by_status"} <= set(stats)
    assert stats["capacity"]["cpu_units"] >= 1
    assert ok(shared.base_url, "stats").startswith("capacity:")


# ---------------------------------------------------------------------------------------------- watch


class Lines:
    """The lines a child process writes, read by a thread so that the test can wait with a deadline."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)

    def drain(self) -> list[str]:
        with contextlib.suppress(queue.Empty):
            while True:
                self.seen.append(self.lines.get(timeout=0.05))
        return self.seen


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        os.kill(process.pid, 15)  # this process, by its pid
    process.wait(10)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "lines"])
def test_watch_prints_one_event_per_line_when_not_on_a_terminal(shared: Service, as_json: bool) -> None:
    job_type = "notification" if as_json else "processing"
    watch = subprocess.Popen(
        [sys.executable, "-m", "service", "watch", "--type", job_type, *(["--json"] if as_json else [])],
        cwd=ROOT,
        env=cli_env(shared.base_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(watch.stdout)
        submitted: list[str] = []

        def saw_one() -> list[str]:
            # The stream starts from "now": keep submitting until one submit lands after it is open.
            submitted.append(shared.submit(type=job_type, run_at=LATER, job_id=unique("cli-watch"))["job_id"])
            return [line for line in lines.drain() if any(job_id in line for job_id in submitted)]

        seen = wait_until(saw_one, timeout=20, interval=0.2, what="an event line from taskq watch")
        if as_json:
            event = json.loads(seen[0])
            assert (event["type"], event["status"], event["event"]) == (job_type, "scheduled", "submitted")
            assert isinstance(event["seq"], int)
        else:
            assert f" {job_type} submitted -> scheduled" in seen[0], seen
    finally:
        stop(watch)
        for stream in (watch.stdout, watch.stderr):
            if stream is not None:
                stream.close()


def test_watch_on_a_terminal_draws_a_table_of_jobs(shared: Service) -> None:
    master, slave = pty.openpty()
    watch = subprocess.Popen(
        [sys.executable, "-m", "service", "watch", "--type", "analysis"],
        cwd=ROOT,
        env=cli_env(shared.base_url, TERM="xterm-256color", COLUMNS="200", LINES="50"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    screen = bytearray()
    try:
        submitted: list[str] = []

        def drawn() -> str | None:
            submitted.append(shared.submit(type="analysis", run_at=LATER, job_id=unique("tty"))["job_id"])
            while select.select([master], [], [], 0.1)[0]:
                try:
                    screen.extend(os.read(master, 65536))
                except OSError:  # the child closed the terminal
                    break
            text = screen.decode(errors="replace")
            return next((job_id for job_id in submitted if job_id in text), None)

        wait_until(drawn, timeout=20, interval=0.2, what="a job id in taskq watch's table", detail=lambda: screen)
        assert "taskq watch" in screen.decode(errors="replace")
    finally:
        stop(watch)
        os.close(master)


# --------------------------------------------------------------------------------------------- errors


def test_an_unknown_job_exits_1_with_the_problem_on_stderr(shared: Service) -> None:
    for command in ("get", "cancel", "retry", "explain", "logs"):
        done = taskq(shared.base_url, command, "no-such-job")
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert done.stderr.startswith("taskq: 404 "), (command, done.stderr)
        assert done.stdout == ""


def test_a_refused_submit_names_the_field(shared: Service) -> None:
    done = taskq(shared.base_url, "submit", "no_such_type", "--run-at", LATER)
    assert done.returncode == 1
    assert done.stderr.startswith("taskq: 422 ")
    assert "(field: type" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("payload", "says"),
    [("{not json", "--payload is not valid JSON"), ("[1, 2]", "--payload must be a JSON object"),
     ("@/nonexistent/payload.json", "--payload: cannot read /nonexistent/payload.json")],
)  # fmt: skip
def test_a_bad_payload_exits_2_naming_the_option(payload: str, says: str) -> None:
    done = taskq("http://127.0.0.1:9", "submit", "quick_task", "--payload", payload)  # no request is made
    assert done.returncode == 2
    assert done.stderr.startswith(f"taskq: {says}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2() -> None:
    assert taskq("http://127.0.0.1:9", "list", "--limit", "0").returncode == 2
    assert taskq("http://127.0.0.1:9", "submit", "x", "--run-at", "tomorrow").returncode == 2
    assert taskq("http://127.0.0.1:9", "watch", "some-id", "--type", "t").returncode == 2


def test_a_key_is_required_when_the_service_has_one(service_factory: Any) -> None:
    service = service_factory(TASKQ_BOOTSTRAP_KEY=KEY).start()
    refused = taskq(service.base_url, "stats")
    assert refused.returncode == 1
    assert refused.stderr.startswith("taskq: 401 "), refused.stderr
    assert ok(service.base_url, "stats", "--api-key", KEY).startswith("capacity:")
    job = json.loads(ok(service.base_url, "submit", "quick_task", "--run-at", LATER, "--json", TASKQ_API_KEY=KEY))
    assert job["status"] == "scheduled"


def test_an_unreachable_service_exits_1() -> None:
    started = time.monotonic()
    done = taskq("http://127.0.0.1:9", "submit", "quick_task")  # a submit without an id is never retried
    assert done.returncode == 1
    assert done.stderr.startswith("taskq: "), done.stderr
    assert time.monotonic() - started < 20
