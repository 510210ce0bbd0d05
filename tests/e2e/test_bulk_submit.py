"""Large batches are written with COPY (`COPY_THRESHOLD` jobs or more): the same jobs, statuses, order and
idempotency as the INSERT path, and a job_id committed concurrently is still caught (the COPY fails on
the unique index and the batch is redone with INSERT ... ON CONFLICT)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from service.api.submit import COPY_THRESHOLD
from tests.conftest import Service

LATER = "2099-01-01T00:00:00Z"


def bulk(prefix: str) -> list[dict[str, Any]]:
    n = COPY_THRESHOLD + 36
    jobs: list[dict[str, Any]] = [
        {"job_id": f"{prefix}-{i:03d}", "type": "quick_task", "run_at": LATER, "priority": "high"} for i in range(n)
    ]
    # children first: dependencies may point forward inside a batch
    jobs[0] = {"job_id": f"{prefix}-child", "type": "report", "depends_on": [f"{prefix}-001", f"{prefix}-002"]}
    jobs[1] = {**jobs[1], "run_at": None, "payload": {"duration_seconds": 0}}
    return jobs


def test_a_large_batch_is_written_like_a_small_one_and_replays(service: Service) -> None:
    jobs = bulk("bulk")
    response = service.http.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 201, response.text
    answers = response.json()["jobs"]
    assert [a["job_id"] for a in answers] == [j["job_id"] for j in jobs]
    statuses = {a["job_id"]: a["status"] for a in answers}
    assert statuses["bulk-child"] == "blocked"
    assert statuses["bulk-001"] in ("pending", "running", "succeeded")
    assert {statuses[j["job_id"]] for j in jobs[2:]} == {"scheduled"}
    assert len({a["created_at"] for a in answers}) == 1  # one transaction
    child = service.job("bulk-child")
    assert child["depends_on"] == ["bulk-001", "bulk-002"]
    scheduled = service.job("bulk-050")
    assert scheduled["priority"] == "high"
    assert scheduled["run_at"] == "2099-01-01T00:00:00.000Z"
    logs = service.http.get("/jobs/bulk-050/logs").json()
    assert [line["event"] for line in logs] == ["submitted", "scheduled"]
    # Listed newest first by seq, which follows the batch's order (parents before the child naming them).
    listed = service.http.get("/jobs", params={"priority": "high", "limit": 500}).json()["items"]
    assert [j["job_id"] for j in reversed(listed)] == [j["job_id"] for j in jobs[1:]]
    assert service.job("bulk-child")["status"] in ("blocked", "pending", "running", "succeeded")
    service.wait_status("bulk-001", "succeeded")

    replay = service.http.post("/jobs/batch", json={"jobs": jobs})
    assert replay.status_code == 200
    assert [a["job_id"] for a in replay.json()["jobs"]] == [j["job_id"] for j in jobs]
    changed = [{**jobs[5], "priority": "low"}, *jobs[6:]]
    conflict = service.http.post("/jobs/batch", json={"jobs": changed})
    assert conflict.status_code == 409
    assert "bulk-005" in conflict.json()["detail"]


def test_an_id_committed_during_the_copy_is_still_a_conflict_and_nothing_is_created(service: Service) -> None:
    jobs = bulk("race")
    taken = jobs[40]["job_id"]

    async def scenario() -> httpx.Response:
        rival = await asyncpg.connect(service.database_url)
        watcher = await asyncpg.connect(service.database_url)
        try:
            transaction = rival.transaction()
            await transaction.start()
            # Not committed yet: the batch's idempotency check cannot see it, its COPY waits on the index.
            await rival.execute(
                "INSERT INTO jobs (job_id, type, priority, status, cpu_units, memory_mb, max_attempts,"
                " backoff_multiplier, initial_delay_seconds, max_delay_seconds, jitter, request_hash, run_at,"
                " next_run_at)"
                " VALUES ($1, 'quick_task', 'normal', 'scheduled', 1, 64, 1, 2, 1, 60, 0, '\\x00', $2, $2)",
                taken,
                datetime(2099, 1, 1, tzinfo=UTC),
            )
            post = asyncio.create_task(asyncio.to_thread(service.http.post, "/jobs/batch", json={"jobs": jobs}))
            for _ in range(500):  # until the batch's COPY waits for the rival's row lock (bounded)
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'COPY%'"
                )
                if waiting or post.done():
                    break
                await asyncio.sleep(0.01)
            assert waiting == 1, "the batch's COPY should be waiting on the uncommitted rival row"
            await transaction.commit()
            return await post
        finally:
            await rival.close()
            await watcher.close()

    response = asyncio.run(scenario())
    assert response.status_code == 409, response.text
    assert taken in response.json()["detail"]
    assert service.http.get(f"/jobs/{jobs[41]['job_id']}").status_code == 404  # all or nothing
