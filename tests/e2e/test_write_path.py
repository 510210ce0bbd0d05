"""The reshaped write path: answers that leave before the scheduler's commit, writes that wait for the
next commit, and the list query built per filter combination."""

from __future__ import annotations

import os
import signal
from typing import Any

from tests.conftest import Service, wait_until

HOLD_NODE = {"cpu_units": 8, "memory_mb": 4096}


def test_a_submit_answered_before_the_scheduler_commits_is_never_lost_nor_run_twice(service: Service) -> None:
    # The node is held, so these jobs wait: the scheduler answers their place in line from memory, before
    # its turn's commit. A kill -9 of the scheduler right after the answers loses none and runs none twice.
    blocker = service.submit(type="long_running", payload={"duration_seconds": 3600}, resource_requirements=HOLD_NODE)
    service.wait_status(blocker["job_id"], "running")
    answers = [
        service.submit(job_id=f"early-{i}", type="quick_task", payload={"duration_seconds": 0}) for i in range(20)
    ]
    assert [a["status"] for a in answers] == ["pending"] * 20
    assert [a["position_in_queue"] for a in answers] == list(range(20))
    scheduler = service.actor_pids()["scheduler"]
    os.kill(scheduler, signal.SIGKILL)
    wait_until(lambda: service.actor_pids().get("scheduler") not in (None, scheduler), what="a new scheduler")
    # The new scheduler answers once it has rebuilt and the API has reconnected to it.
    wait_until(lambda: service.http.patch(f"/jobs/{blocker['job_id']}/cancel").status_code == 200, what="the cancel")
    for answer in answers:
        done = service.wait_status(answer["job_id"], "succeeded", timeout=30)
        assert [a["outcome"] for a in done["attempts"]] == ["succeeded"]
        events = [line["event"] for line in service.http.get(f"/jobs/{answer['job_id']}/logs").json()]
        assert events.count("started") == 1
        assert events.count("succeeded") == 1


def test_a_worker_pid_and_handler_lines_reach_the_database_while_nothing_else_commits(service: Service) -> None:
    # They wait to share a commit with the next state change; with none coming, a timer writes them.
    job = service.submit(type="long_running", payload={"duration_seconds": 3600, "print_lines": 2})
    service.wait_status(job["job_id"], "running")
    pid = wait_until(lambda: service.job(job["job_id"])["attempts"][0]["worker_pid"], what="the worker pid")
    lines = wait_until(
        lambda: [line for line in service.http.get(f"/jobs/{job['job_id']}/logs").json() if line["event"] == "log"],
        what="the handler's log lines",
    )
    assert service.job(job["job_id"])["status"] == "running"
    started = [line for line in service.http.get(f"/jobs/{job['job_id']}/logs").json() if line["event"] == "started"]
    assert started[0]["message"] == f"attempt 1 started on pid {pid}"
    assert started[0]["id"] < lines[0]["id"]  # the lines keep the order they happened in
    assert service.http.patch(f"/jobs/{job['job_id']}/cancel").status_code == 200
    service.wait_status(job["job_id"], "cancelled")


def test_every_combination_of_list_filters_finds_the_same_jobs_as_a_plain_filter(service: Service) -> None:
    jobs: list[dict[str, Any]] = []
    for i, (job_type, priority) in enumerate(
        [("quick_task", "high"), ("quick_task", "low"), ("send_email", "high"), ("send_email", "low")] * 3
    ):
        later = {"run_at": "2099-01-01T00:00:00Z"} if i % 3 == 0 else {}
        jobs.append(service.submit(job_id=f"combo-{i}", type=job_type, priority=priority, **later))
    for job in jobs:
        if job["status"] != "scheduled":
            service.wait_status(job["job_id"], "succeeded")
    everything = {job["job_id"]: service.job(job["job_id"]) for job in jobs}
    for status in ("scheduled", "succeeded", "failed", None):
        for job_type in ("quick_task", "send_email", None):
            for priority in ("high", "low", None):
                params = {k: v for k, v in {"status": status, "type": job_type, "priority": priority}.items() if v}
                expected = [
                    job_id
                    for job_id, job in sorted(everything.items(), key=lambda kv: -int(kv[0].split("-")[1]))
                    if all(job[k] == v for k, v in params.items())
                ]
                seen: list[str] = []
                cursor = None
                while True:  # pages of 2: the keyset cursor is part of every combination
                    page = service.http.get(
                        "/jobs", params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
                    )
                    assert page.status_code == 200, page.text
                    seen += [item["job_id"] for item in page.json()["items"] if item["job_id"].startswith("combo-")]
                    cursor = page.json()["next_cursor"]
                    if cursor is None:
                        break
                assert seen == expected, params
