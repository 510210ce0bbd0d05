"""Retention: finished jobs leave the database with their attempts and logs once their time is up, one
class at a time, and never a job that a live job still depends on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from tests.conftest import Service, wait_until
from tests.e2e.test_observability import metric_value


def rows_of(service: Service, job_id: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        conn = await asyncpg.connect(service.database_url)
        try:
            return {
                table: int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE job_id = $1", job_id))
                for table in ("jobs", "attempts", "job_logs")
            }
        finally:
            await conn.close()

    return asyncio.run(count())


def test_finished_jobs_are_pruned_after_their_retention_and_live_dependencies_are_kept(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(TASKQ_RETENTION_SUCCEEDED="1s", TASKQ_RETENTION_FAILED="1h").start()
    done = service.submit(type="quick_task", payload={"duration_seconds": 0})
    parent = service.submit(type="quick_task", payload={"duration_seconds": 0})
    # Live throughout (blocked, then waiting for its run_at): its parent must outlive the retention.
    child = service.submit(type="quick_task", depends_on=[parent["job_id"]], run_at="2099-01-01T00:00:00Z")
    failed = service.submit(type="invalid_operation")
    for job in (done, parent):
        service.wait_status(job["job_id"], "succeeded")
    service.wait_status(failed["job_id"], "failed")

    wait_until(lambda: service.http.get(f"/jobs/{done['job_id']}").status_code == 404, timeout=20, what="retention")
    assert rows_of(service, done["job_id"]) == {"jobs": 0, "attempts": 0, "job_logs": 0}
    assert metric_value(service, "taskq_jobs_pruned_total", status="succeeded") == 1
    # Kept: the parent of a live job, the failed job (1 h), the live job itself.
    assert service.job(parent["job_id"])["status"] == "succeeded"
    assert service.job(failed["job_id"])["status"] == "failed"
    assert service.job(child["job_id"])["status"] == "scheduled"
    stats = service.http.get("/stats").json()["jobs_by_status"]
    assert (stats["succeeded"], stats["failed"], stats["scheduled"]) == (1, 1, 1)
    # Once its child is gone (cancelled: finished, and kept for the 1 s of its class), the parent goes too.
    assert service.http.patch(f"/jobs/{child['job_id']}/cancel").status_code == 200
    wait_until(lambda: service.http.get(f"/jobs/{parent['job_id']}").status_code == 404, timeout=20, what="the parent")
    wait_until(lambda: service.http.get(f"/jobs/{child['job_id']}").status_code == 404, timeout=20, what="the child")
    # The id of a pruned job is free again: a new submission is a new job, not a replay.
    again = service.submit(type="quick_task", job_id=done["job_id"], payload={"duration_seconds": 0})
    assert service.wait_status(again["job_id"], "succeeded")["attempts"][0]["attempt"] == 1


def test_a_retention_of_zero_keeps_that_class_while_the_other_is_pruned(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(TASKQ_RETENTION_SUCCEEDED="0", TASKQ_RETENTION_FAILED="1s").start()
    kept = service.submit(type="quick_task", payload={"duration_seconds": 0})
    service.wait_status(kept["job_id"], "succeeded")
    failed = service.submit(type="invalid_operation")
    service.wait_status(failed["job_id"], "failed")
    wait_until(lambda: service.http.get(f"/jobs/{failed['job_id']}").status_code == 404, timeout=20, what="retention")
    # The pass that deleted the failed job saw the succeeded one, finished earlier, and kept it.
    rows = rows_of(service, kept["job_id"])
    assert (rows["jobs"], rows["attempts"]) == (1, 1)
    assert rows["job_logs"] >= 3  # submitted, started, succeeded and the handler's line
    assert metric_value(service, "taskq_jobs_pruned_total", status="failed") == 1
    assert metric_value(service, "taskq_jobs_pruned_total", status="succeeded") == 0
