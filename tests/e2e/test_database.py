"""The database side of "nothing lost": an outage of PostgreSQL, and the embedded PostgreSQL after kill -9."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import PgServer, Service, wait_until


def test_database_outage_gives_503_then_recovers_without_loss_or_duplicates(
    pg: PgServer, service_factory: Callable[..., Service]
) -> None:
    if not pg.restartable():
        pytest.skip("the tests run against an external TASKQ_DATABASE_URL, which they may not restart")
    service = service_factory().start()
    ids = [service.submit(type="quick_task", payload={"duration_seconds": 0.5})["job_id"] for _ in range(10)]
    pg.stop_server()
    try:
        wait_until(lambda: service.http.get("/health/ready").status_code == 503, timeout=10, what="not ready")
        refused = service.http.post("/jobs", json={"type": "quick_task"})
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert service.http.get(f"/jobs/{ids[0]}").status_code == 503
    finally:
        pg.start_server()
    seen: dict[str, str] = {}

    def ready() -> bool:
        response = service.http.get("/health/ready")
        seen["checks"] = response.text
        return response.status_code == 200

    wait_until(ready, timeout=30, what="ready again", detail=lambda: f"/health/ready said {seen.get('checks')}")
    ids.append(service.submit(type="quick_task")["job_id"])
    for job_id in ids:
        done = service.wait_status(job_id, "succeeded", timeout=30)
        assert [a["outcome"] for a in done["attempts"]] == ["succeeded"]


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])


def postmaster_pid_or_none(data_dir: Path) -> int | None:
    """None while the file is missing or half written (a starting postmaster writes it in steps)."""
    try:
        return postmaster_pid(data_dir)
    except (FileNotFoundError, ValueError, IndexError):
        return None


@pytest.mark.parametrize("also_kill_postgres", [False, True], ids=["postmaster-survives", "stale-pid-file"])
def test_embedded_postgres_copes_with_a_kill_9_of_the_service(
    service_factory: Callable[..., Service], tmp_path: Path, also_kill_postgres: bool
) -> None:
    data_dir = tmp_path / "data"
    first = service_factory(embedded=True, TASKQ_DATA_DIR=str(data_dir)).start(timeout=60)
    job = first.submit(type="long_running", payload={"duration_seconds": 30}, retry_config={"initial_delay_seconds": 0})
    first.wait_status(job["job_id"], "running")
    postmaster = postmaster_pid(data_dir)
    first.kill()
    if also_kill_postgres:
        os.kill(postmaster, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{postmaster}").exists(), what="postmaster gone")
        assert (data_dir / "pg" / "postmaster.pid").exists()  # stale
    second = service_factory(embedded=True, TASKQ_DATA_DIR=str(data_dir)).start(timeout=60)
    wait_until(lambda: len(second.job(job["job_id"])["attempts"]) == 2, what="a second attempt")
    assert second.job(job["job_id"])["attempts"][0]["outcome"] == "crashed"
    second.http.patch(f"/jobs/{job['job_id']}/cancel")
    second.wait_status(job["job_id"], "cancelled")
    assert second.stop() == 0
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # a clean exit stops the embedded PostgreSQL


@pytest.mark.parametrize("signum", [signal.SIGQUIT, signal.SIGKILL], ids=["sigquit", "sigkill"])
def test_the_embedded_postgres_killed_under_a_submit_burst_comes_back_and_nothing_acknowledged_is_lost(
    service_factory: Callable[..., Service], tmp_path: Path, signum: int
) -> None:
    """SIGQUIT is PostgreSQL's immediate shutdown (what its children see of a crash); SIGKILL (the OOM
    killer) leaves a stale postmaster.pid and orphaned backends behind. The service owns its embedded
    PostgreSQL, so it starts it again by itself either way."""
    data_dir = tmp_path / "data"
    service = service_factory(embedded=True, TASKQ_DATA_DIR=str(data_dir)).start(timeout=60)
    accepted: list[str] = []
    answers: Counter[int] = Counter()
    stop = threading.Event()

    def burst() -> None:
        with httpx.Client(base_url=service.base_url, timeout=10.0) as http:
            while not stop.is_set():
                response = http.post("/jobs", json={"type": "quick_task", "payload": {"duration_seconds": 0}})
                answers[response.status_code] += 1
                if response.status_code == 201:
                    accepted.append(response.json()["job_id"])

    submitter = threading.Thread(target=burst)
    submitter.start()
    try:
        wait_until(lambda: len(accepted) >= 20, what="a submit burst under way")
        postmaster = postmaster_pid(data_dir)
        os.kill(postmaster, signum)
        wait_until(
            lambda: (
                not Path(f"/proc/{postmaster}/status").exists()
                or "zombie" in Path(f"/proc/{postmaster}/status").read_text()
            ),
            what="the postmaster gone",
        )
        wait_until(
            lambda: (data_dir / "pg" / "postmaster.pid").exists() and postmaster_pid_or_none(data_dir) != postmaster,
            timeout=30,
            what="a new postmaster",
        )
        before = len(accepted)
        wait_until(lambda: len(accepted) >= before + 20, timeout=30, what="submissions accepted again")
    finally:
        stop.set()
        submitter.join(30)
    assert set(answers) <= {201, 503}, answers  # refused while the database was away, never a 500
    wait_until(lambda: service.http.get("/health/ready").status_code == 200, timeout=30, what="ready again")
    for job_id in accepted:  # every acknowledged job exists and ran exactly once
        done = service.wait_status(job_id, "succeeded", timeout=60)
        # A start committed just before PostgreSQL died may never have reached the supervisor: that
        # attempt never ran, and is closed `interrupted` (uncharged), never `crashed`. (No drain runs
        # here, so `interrupted` can only mean that.)
        outcomes = [a["outcome"] for a in done["attempts"]]
        assert outcomes[-1] == "succeeded", done
        assert set(outcomes[:-1]) <= {"interrupted"}, done
    assert "embedded PostgreSQL (pid" in service.logs()
    assert "back after" in service.logs()
