"""Reused workers (`@job_type(..., reuse_worker=True)`, the built-in `tiny_task`): attempts share a
process, each keeps its own output, and a worker that was killed or crashed is never handed another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

from tests.conftest import Service, wait_until


def worker_pid(service: Service, job_id: str) -> int:
    return int(service.job(job_id)["attempts"][-1]["worker_pid"])


def handler_lines(service: Service, job_id: str) -> list[str]:
    return [line["message"] for line in service.http.get(f"/jobs/{job_id}/logs").json() if line["event"] == "log"]


def submit_batch(service: Service, jobs: list[dict[str, Any]]) -> list[str]:
    response = service.http.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 201, response.text
    return [job["job_id"] for job in response.json()["jobs"]]


def test_tiny_jobs_share_workers_and_each_keeps_its_own_output(service: Service) -> None:
    tiny = submit_batch(service, [{"type": "tiny_task", "payload": {"duration_seconds": 0, "print_lines": 3}}] * 40)
    fresh = submit_batch(service, [{"type": "quick_task", "payload": {"duration_seconds": 0}}] * 10)
    for job_id in tiny + fresh:
        service.wait_status(job_id, "succeeded")
    tiny_pids = [worker_pid(service, job_id) for job_id in tiny]
    # Eight run at once (capacity 8 CPU units): without reuse, 40 jobs would need 40 processes.
    assert len(set(tiny_pids)) <= 20, tiny_pids
    fresh_pids = [worker_pid(service, job_id) for job_id in fresh]
    assert len(set(fresh_pids)) == len(fresh), "a job type without reuse_worker gets a process of its own"
    assert not set(fresh_pids) & set(tiny_pids)
    for job_id in tiny:
        lines = handler_lines(service, job_id)
        assert lines == [f"attempt 1 of job {job_id} starting", "stdout line 0", "stdout line 1", "stdout line 2"]


def test_a_killed_or_crashed_reused_worker_is_replaced_and_handlers_start_clean(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(TASKQ_KILL_GRACE_SECONDS="0.5").start()
    once = {"max_attempts": 1}
    # A handler that ignores SIGTERM, in a worker that is then reused: the next attempt gets the default
    # disposition back, so its timeout is a plain SIGTERM, not an escalation to SIGKILL.
    first = service.submit(type="tiny_task", payload={"duration_seconds": 0, "ignore_sigterm": True})
    service.wait_status(first["job_id"], "succeeded")
    second = service.submit(type="tiny_task", payload={"duration_seconds": 60}, timeout_seconds=0.5, retry_config=once)
    timed_out = service.wait_status(second["job_id"], "failed", timeout=10)["attempts"][0]
    assert timed_out["outcome"] == "timed_out"
    assert timed_out["worker_pid"] == worker_pid(service, first["job_id"]), "the worker was reused"
    assert "SIGKILL" not in timed_out["error"]
    crash = service.submit(type="tiny_task", payload={"duration_seconds": 0, "exit_code": 3}, retry_config=once)
    assert service.wait_status(crash["job_id"], "failed")["attempts"][0]["outcome"] == "crashed"
    after = service.submit(type="tiny_task", payload={"duration_seconds": 0})
    service.wait_status(after["job_id"], "succeeded")
    dead = {timed_out["worker_pid"], worker_pid(service, crash["job_id"])}
    assert worker_pid(service, after["job_id"]) not in dead
    for pid in dead:
        wait_until(lambda pid=pid: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie")


def test_a_task_an_attempt_leaves_behind_is_cancelled_before_the_next_attempt(service: Service) -> None:
    first = service.submit(type="tiny_task", payload={"duration_seconds": 0, "stray_task_seconds": 0.3})
    service.wait_status(first["job_id"], "succeeded")
    second = service.submit(type="tiny_task", payload={"duration_seconds": 0.8})
    service.wait_status(second["job_id"], "succeeded")
    assert worker_pid(service, second["job_id"]) == worker_pid(service, first["job_id"]), "the worker was reused"
    lines = handler_lines(service, first["job_id"]) + handler_lines(service, second["job_id"])
    assert not [line for line in lines if "stray task" in line]
