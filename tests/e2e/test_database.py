"""The database side of "nothing lost": an outage of PostgreSQL, and the embedded PostgreSQL after kill -9."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

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
    recovered = wait_until(lambda: len(second.job(job["job_id"])["attempts"]) == 2, what="a second attempt")
    assert recovered
    assert second.job(job["job_id"])["attempts"][0]["outcome"] == "crashed"
    second.http.patch(f"/jobs/{job['job_id']}/cancel")
    second.wait_status(job["job_id"], "cancelled")
    assert second.stop() == 0
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # a clean exit stops the embedded PostgreSQL
