"""Starts and results travel in bursts (one write per scheduler turn, one per supervisor loop pass). A kill -9
in the middle of such a burst loses no job and ends none twice."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import psutil

from tests.conftest import Service, wait_until

JOBS = 1000


def succeeded(service: Service) -> int:
    return int(service.http.get("/stats").json()["jobs_by_status"]["succeeded"])


def busy_workers(service: Service) -> list[psutil.Process]:
    found = []
    for process in psutil.Process(service.pid).children(recursive=True):
        try:
            if " ".join(process.cmdline()).startswith("taskq: worker drain-"):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_a_drain_of_reused_workers_survives_kill_9_of_a_worker_and_of_the_supervisor(
    service_factory: Callable[..., Service],
) -> None:
    # 32 slots of 0.2 s jobs: the drain lasts seconds whatever the machine's speed, so both kills land
    # in the middle of it, while starts and results are in flight in bursts.
    service = service_factory(TASKQ_CPU_UNITS="32", TASKQ_MEMORY_MB="65536").start()
    jobs = [
        {
            "job_id": f"drain-{i}",
            "type": "tiny_task",
            "payload": {"duration_seconds": 0.2},
            "resource_requirements": {"cpu_units": 1, "memory_mb": 1},
            "retry_config": {"max_attempts": 5, "initial_delay_seconds": 0},
        }
        for i in range(JOBS)
    ]
    assert service.http.post("/jobs/batch", json={"jobs": jobs}).status_code == 201

    wait_until(lambda: succeeded(service) >= 64, timeout=60, what="the first results")
    worker = wait_until(lambda: busy_workers(service), what="a busy reused worker")[0]
    worker.kill()
    wait_until(lambda: succeeded(service) >= JOBS // 3, timeout=60, what="a third of the jobs")
    supervisor = service.actor_pids()["supervisor"]
    assert succeeded(service) < JOBS, "the drain ended before the supervisor could be killed mid-way"
    os.kill(supervisor, signal.SIGKILL)

    wait_until(lambda: succeeded(service) == JOBS, timeout=120, what="every job to succeed")
    outcomes = {}
    cursor = None
    while True:
        page = service.http.get(
            "/jobs", params={"status": "succeeded", "limit": 500, **({"cursor": cursor} if cursor else {})}
        ).json()
        for item in page["items"]:
            outcomes[item["job_id"]] = [a["outcome"] for a in service.job(item["job_id"])["attempts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(outcomes) == JOBS
    for job_id, attempts in outcomes.items():
        # At least once: an attempt cut off by a kill is crashed and retried; only the last one succeeded.
        assert attempts[-1] == "succeeded", (job_id, attempts)
        assert set(attempts[:-1]) <= {"crashed"}, (job_id, attempts)
    crashed = [job_id for job_id, attempts in outcomes.items() if "crashed" in attempts]
    assert crashed, "neither kill cut off a running attempt: the test proved nothing"
    assert service.actor_pids()["supervisor"] != supervisor
