"""The core service end to end: the real process tree, the real database, over HTTP."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import Service, wait_until
from tests.scenarios import scenario_1


def started_order(service: Service, job_ids: list[str]) -> list[str]:
    """Jobs in the order their attempts started, by the id of their `started` log line."""

    def first_start(job_id: str) -> int:
        lines = service.http.get(f"/jobs/{job_id}/logs").json()
        return min(line["id"] for line in lines if line["event"] == "started")

    return sorted(job_ids, key=first_start)


class Blocker:
    """A job holding the whole node until the test releases it: the test never races a fixed duration
    that a loaded machine could outlast (or cut short)."""

    def __init__(self, service: Service, release_dir: Path) -> None:
        self.release_file = release_dir / f"release-{next(_blockers)}"
        job = service.submit(
            type="long_running",
            payload={"duration_seconds": 0, "release_file": str(self.release_file)},
            resource_requirements={"cpu_units": 8, "memory_mb": 4096},
        )
        service.wait_status(job["job_id"], "running")
        self.job_id = str(job["job_id"])

    def release(self) -> str:
        self.release_file.touch()
        return self.job_id


_blockers = itertools.count()


def test_scenario_1_jobs_run_in_priority_order_and_succeed(service: Service, tmp_path: Path) -> None:
    blocker = Blocker(service, tmp_path)
    jobs = [service.submit(**job) for job in scenario_1()]
    assert [job["status"] for job in jobs] == ["pending"] * 3
    assert [job["position_in_queue"] for job in jobs] == [0, 0, 2]  # critical jumped ahead of normal
    stats = service.http.get("/stats").json()
    assert stats["resources_in_use"] == {"cpu_units": 8, "memory_mb": 4096}
    assert stats["jobs_by_status"]["pending"] == 3
    blocker.release()
    done = [service.wait_status(job["job_id"], "succeeded") for job in jobs]
    service.wait_status(blocker.job_id, "succeeded")
    ids = [job["job_id"] for job in jobs]
    assert started_order(service, ids) == [ids[1], ids[0], ids[2]]  # critical, normal, low
    for job in done:
        assert job["attempt_count"] == 1
        assert [a["outcome"] for a in job["attempts"]] == ["succeeded"]
        assert job["started_at"] <= job["finished_at"]
    final = service.http.get("/stats").json()
    assert final["resources_in_use"] == {"cpu_units": 0, "memory_mb": 0}
    assert final["jobs_by_status"]["succeeded"] == 4


def test_saturated_node_starts_jobs_strictly_by_priority_then_fifo(service: Service, tmp_path: Path) -> None:
    blocker = Blocker(service, tmp_path)
    priorities = ["critical", "high", "normal", "low"] * 3
    random.Random(7).shuffle(priorities)
    submitted = [
        service.submit(
            type="quick_task",
            priority=priority,
            payload={"duration_seconds": 0.02},
            resource_requirements={"cpu_units": 8, "memory_mb": 512},
        )
        for priority in priorities
    ]
    assert {job["status"] for job in submitted} == {"pending"}  # all of them wait behind the blocker
    blocker.release()
    for job in submitted:
        service.wait_status(job["job_id"], "succeeded")
    service.wait_status(blocker.job_id, "succeeded")
    rank = {"critical": 0, "high": 1, "normal": 2, "low": 3}
    expected = [job["job_id"] for job in sorted(submitted, key=lambda j: (rank[j["priority"]], submitted.index(j)))]
    jobs = {job["job_id"]: service.job(job["job_id"]) for job in submitted}
    by_start = sorted(jobs, key=lambda job_id: jobs[job_id]["attempts"][0]["started_at"])
    assert by_start == expected
    # One at a time: each started only after the previous one finished.
    for before, after in itertools.pairwise(by_start):
        assert jobs[before]["finished_at"] <= jobs[after]["started_at"]


def test_job_runs_in_its_own_worker_process(service: Service) -> None:
    job = service.submit(type="data_export", payload={"duration_seconds": 0.01})
    done = service.wait_status(job["job_id"], "succeeded")
    worker_pid = done["result"]["worker_pid"]
    actors = service.actor_pids()
    assert set(actors) == {"scheduler", "supervisor", "api"}
    assert worker_pid not in {service.pid, *actors.values()}
    wait_until(lambda: service.job(job["job_id"])["attempts"][0]["worker_pid"] == worker_pid, what="worker pid")
    second = service.submit(type="data_export", payload={"duration_seconds": 0.01})
    assert service.wait_status(second["job_id"], "succeeded")["result"]["worker_pid"] != worker_pid
    assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE


def test_worker_that_dies_mid_job_ends_its_attempt_as_crashed(service: Service) -> None:
    job = service.submit(
        type="processing",
        payload={"exit_code": 3, "duration_seconds": 0.01},
        retry_config={"max_attempts": 2, "initial_delay_seconds": 0.05, "jitter": 0},
    )
    failed = service.wait_status(job["job_id"], "failed")
    assert [a["outcome"] for a in failed["attempts"]] == ["crashed", "crashed"]
    assert "exited with code 3" in failed["attempts"][0]["error"]
    assert failed["attempt_count"] == 2
    events = [line["event"] for line in service.http.get(f"/jobs/{job['job_id']}/logs").json()]
    assert events.count("started") == 2
    assert "retry_scheduled" in events
    assert events[-1] == "crashed"


def test_same_job_id_and_body_is_one_job_and_one_execution(service: Service) -> None:
    body = {"job_id": "report-2024-01-15", "type": "report", "payload": {"day": "2024-01-15"}}
    first = service.http.post("/jobs", json=body)
    again = service.http.post("/jobs", json={**body, "priority": "normal"})  # a default spelled out
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["job_id"] == first.json()["job_id"]
    conflict = service.http.post("/jobs", json={**body, "payload": {"day": "2024-01-16"}})
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")
    done = service.wait_status("report-2024-01-15", "succeeded")
    assert done["attempt_count"] == 1


def test_get_list_and_keyset_pagination(service: Service) -> None:
    ids = [service.submit(type="notification", priority="low" if i % 2 else "high")["job_id"] for i in range(7)]
    for job_id in ids:
        service.wait_status(job_id, "succeeded")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = service.http.get("/jobs", params=params).json()
        seen += [item["job_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # newest first, each exactly once
    assert pages == 3
    high = service.http.get("/jobs", params={"priority": "high", "status": "succeeded"}).json()
    assert {item["job_id"] for item in high["items"]} == set(ids[0::2])
    by_type = service.http.get("/jobs", params={"type": "send_email"}).json()
    assert by_type == {"items": [], "next_cursor": None}
    missing = service.http.get("/jobs/no-such-job")
    assert missing.status_code == 404
    assert missing.json()["status"] == 404


def test_cancel_pending_job_is_immediate_and_it_never_runs(service: Service, tmp_path: Path) -> None:
    blocker = Blocker(service, tmp_path)
    job = service.submit(type="quick_task", resource_requirements={"cpu_units": 2, "memory_mb": 256})
    assert job["status"] == "pending"
    cancelled = service.http.patch(f"/jobs/{job['job_id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = service.http.patch(f"/jobs/{job['job_id']}/cancel")
    assert again.status_code == 409
    assert service.http.patch("/jobs/nope/cancel").status_code == 404
    service.wait_status(blocker.release(), "succeeded")
    after = service.job(job["job_id"])
    assert after["status"] == "cancelled"
    assert after["attempt_count"] == 0
    assert after["attempts"] == []


def test_job_logs_hold_lifecycle_events_and_handler_lines(service: Service) -> None:
    job = service.submit(type="external_api", payload={"fail_times": 1}, retry_config={"initial_delay_seconds": 0})
    service.wait_status(job["job_id"], "succeeded")
    lines = service.http.get(f"/jobs/{job['job_id']}/logs").json()
    events = [line["event"] for line in lines]
    assert events[0] == "submitted"
    assert events[-1] == "succeeded"
    assert "retry_scheduled" in events
    retry = next(line for line in lines if line["event"] == "retry_scheduled")
    assert retry["data"]["delay_seconds"] >= 0
    handler_lines = [line for line in lines if line["event"] == "log"]
    assert {line["attempt"] for line in handler_lines} == {1, 2}
    assert any("starting" in line["message"] for line in handler_lines)
    assert all(line["timestamp"].endswith("Z") for line in lines)
    assert service.http.get("/jobs/unknown/logs").status_code == 404


def test_sigterm_drains_running_jobs_refuses_new_ones_and_a_restart_continues(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    first = service_factory().start()
    blocker = Blocker(first, tmp_path)
    waiting = [first.submit(type="quick_task")["job_id"] for _ in range(3)]
    assert first.process is not None
    first.process.send_signal(signal.SIGTERM)
    wait_until(lambda: first.http.get("/health/ready").status_code == 503, timeout=1.0, what="not ready")
    refused = first.http.post("/jobs", json={"type": "quick_task"})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    refused_batch = first.http.post("/jobs/batch", json={"jobs": [{"type": "quick_task"}]})
    assert refused_batch.status_code == 503
    assert refused_batch.headers["retry-after"] == "1"
    assert refused_batch.headers["content-type"].startswith("application/problem+json")
    blocker.release()  # during the drain: it finishes within the grace
    assert first.process.wait(20) == 0
    second = service_factory(first.database_url).start()
    assert [a["outcome"] for a in second.job(blocker.job_id)["attempts"]] == ["succeeded"]
    for job_id in waiting:
        done = second.wait_status(job_id, "succeeded")
        assert [a["outcome"] for a in done["attempts"]] == ["succeeded"]  # none started during the drain


def test_jobs_still_running_after_the_grace_are_interrupted_without_using_an_attempt(
    service_factory: Callable[..., Service], tmp_path: Path
) -> None:
    first = service_factory(TASKQ_SHUTDOWN_GRACE_SECONDS="0.5").start()
    release = tmp_path / "release"
    payload = {"duration_seconds": 0, "release_file": str(release)}
    job = first.submit(type="long_running", payload=payload, retry_config={"max_attempts": 1})
    first.wait_status(job["job_id"], "running")
    assert first.stop() == 0  # it still waits for its release: the end of the grace interrupts it
    release.touch()
    second = service_factory(first.database_url, TASKQ_SHUTDOWN_GRACE_SECONDS="0.5").start()
    done = second.wait_status(job["job_id"], "succeeded")
    assert [a["outcome"] for a in done["attempts"]] == ["interrupted", "succeeded"]  # max_attempts 1 and yet it ran


def test_a_second_signal_ends_the_grace_at_once(service_factory: Callable[..., Service]) -> None:
    first = service_factory(TASKQ_SHUTDOWN_GRACE_SECONDS="60").start()
    job = first.submit(type="long_running", payload={"duration_seconds": 60})
    first.wait_status(job["job_id"], "running")
    assert first.process is not None
    first.process.send_signal(signal.SIGTERM)
    wait_until(lambda: first.http.get("/health/ready").status_code == 503, timeout=2, what="draining")
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(15) == 0  # far sooner than the 60 s grace
    second = service_factory(first.database_url).start()
    assert second.job(job["job_id"])["attempts"][0]["outcome"] == "interrupted"
    second.http.patch(f"/jobs/{job['job_id']}/cancel")
    second.wait_status(job["job_id"], "cancelled")


def test_a_thousand_tiny_jobs_each_run_exactly_once(service: Service) -> None:
    """The specification's 1000-job run as a correctness check (speed is measured by `make bench`):
    under a steady stream of forks, starts and exits, no actor crashes and no attempt repeats."""
    jobs = [{"type": "quick_task", "priority": p, "payload": {"duration_seconds": 0}} for p in ["low", "high"] * 500]
    response = service.http.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 201
    wait_until(
        lambda: service.http.get("/stats").json()["jobs_by_status"]["succeeded"] == 1000,
        timeout=120,
        interval=0.2,
        what="1000 jobs to succeed",
    )
    attempts = []
    cursor = None
    while True:
        page = service.http.get("/jobs", params={"limit": 500, **({"cursor": cursor} if cursor else {})}).json()
        attempts += [item["attempt_count"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert attempts == [1] * 1000
    assert "restarting" not in service.logs()


def test_bad_settings_stop_the_start_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    for env, expected in (
        ({"TASKQ_PORT": "abc"}, "taskq: expected TASKQ_PORT to be an integer 1-65535, got 'abc'"),
        ({"TASKQ_HANDLERS": "no_such_module_here"}, "taskq: cannot import handler module 'no_such_module_here'"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "service", "serve"],
            env={**os.environ, "TASKQ_DATA_DIR": str(tmp_path), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1].startswith(expected)
        assert "Traceback" not in done.stderr


def test_an_actor_that_keeps_dying_stops_the_service_with_a_clear_error(service: Service) -> None:
    """OTP's restart intensity: more than 5 restarts of one child within 30 s ends the service."""
    for _ in range(6):
        pid = wait_until(lambda: service.actor_pids().get("supervisor"), what="a supervisor")
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda pid=pid: (
                service.process is not None
                and (service.process.poll() is not None or service.actor_pids().get("supervisor") not in (None, pid))
            ),
            what="the supervisor restarted or the service stopped",
        )
    assert service.process is not None
    assert service.process.wait(30) == 1
    assert "supervisor restarted 6 times within 30s; stopping the service" in service.logs()
