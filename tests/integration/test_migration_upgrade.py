"""An existing database upgrades in place: every migration after the first release applied to a
populated database keeps every job, attempt and log line, and the service's queries see the same jobs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from service.store import gateway
from service.store.migrations import dbmate_binary, dbmate_url, migrate
from tests.integration.test_schema_file import MIGRATIONS, with_database

BEFORE_LEAN_WRITE_PATH = "20261129000006"

POPULATE = """
INSERT INTO jobs (job_id, type, priority, status, payload, cpu_units, memory_mb, max_attempts, backoff_multiplier,
                  initial_delay_seconds, max_delay_seconds, jitter, request_hash, ready_at, started_at,
                  finished_at, attempt_count, run_at, next_run_at, error)
SELECT 'old-' || g, CASE WHEN g % 2 = 0 THEN 'quick_task' ELSE 'send_email' END,
       (ARRAY['critical', 'high', 'normal', 'low'])[1 + g % 4]::job_priority,
       s.status::job_status, jsonb_build_object('n', g), 1, 64, 3, 2, 1, 60, 0.1, '\\x00',
       CASE WHEN s.status = 'pending' THEN now() END,
       CASE WHEN s.status IN ('running', 'succeeded', 'failed') THEN now() END,
       CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled', 'upstream_failed') THEN now() END,
       CASE WHEN s.status IN ('running', 'succeeded', 'failed') THEN 1 ELSE 0 END,
       CASE WHEN s.status = 'scheduled' THEN now() + interval '1 day' END,
       CASE WHEN s.status = 'scheduled' THEN now() + interval '1 day' END,
       CASE WHEN s.status = 'failed' THEN 'boom' END
FROM generate_series(1, 400) g,
     LATERAL (SELECT (ARRAY['pending', 'running', 'succeeded', 'failed', 'scheduled', 'blocked', 'cancelled',
                            'upstream_failed'])[1 + g % 8] AS status) s;
INSERT INTO attempts (job_id, attempt, started_at, finished_at, outcome, worker_pid)
SELECT job_id, 1, started_at, finished_at,
       CASE status WHEN 'succeeded' THEN 'succeeded'::attempt_outcome WHEN 'failed' THEN 'failed' END, 4242
FROM jobs WHERE started_at IS NOT NULL;
INSERT INTO job_logs (job_id, attempt, at, level, event, message)
SELECT job_id, NULL, created_at, 'info', 'submitted', 'submitted as ' || status FROM jobs;
"""

SNAPSHOT = {
    "jobs": "SELECT job_id, status::text, payload::text, attempt_count, error FROM jobs ORDER BY job_id",
    "attempts": "SELECT job_id, attempt, outcome::text, worker_pid FROM attempts ORDER BY 1, 2",
    "logs": "SELECT id, job_id, event, message FROM job_logs ORDER BY id",
}


async def _run(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in SNAPSHOT.items()}
    finally:
        await conn.close()


async def _read_through_the_store(url: str) -> dict[str, Any]:
    pool = await gateway.connect_pool(url, min_size=1, max_size=1)
    try:
        live = await gateway.load_live_jobs(pool)
        failed = await gateway.list_jobs(pool, status="failed", type=None, priority=None, before_seq=None, limit=500)
        running = await gateway.list_jobs(
            pool, status="running", type="quick_task", priority=None, before_seq=None, limit=500
        )
        return {
            "live": sorted(job.job_id for job in live),
            "failed": sorted(job.job_id for job in failed),
            "running_quick": sorted(job.job_id for job in running),
            "resources": await gateway.running_resources(pool),
        }
    finally:
        await pool.close()


def test_a_populated_database_upgrades_without_losing_a_row(pg: Any, tmp_path: Path) -> None:
    old = tmp_path / "migrations"
    old.mkdir()
    for path in MIGRATIONS:
        if path.name[:14] <= BEFORE_LEAN_WRITE_PATH:
            shutil.copy(path, old / path.name)
    assert len(list(old.iterdir())) < len(MIGRATIONS), "no migration after the old release to test"
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    url = with_database(pg.admin_url, name)
    subprocess.run(
        [dbmate_binary(), "--url", dbmate_url(url), "--migrations-dir", str(old), "--no-dump-schema", "up"],
        check=True,
        capture_output=True,
    )
    try:
        asyncio.run(_run(url, POPULATE))
        before = asyncio.run(_snapshot(url))
        assert len(before["jobs"]) == 400
        assert before["attempts"]
        assert before["logs"]

        migrate(url)

        assert asyncio.run(_snapshot(url)) == before
        seen = asyncio.run(_read_through_the_store(url))
        by_status: dict[str, list[str]] = {}
        for job_id, status, *_ in before["jobs"]:
            by_status.setdefault(status, []).append(job_id)
        live = sorted(j for s in ("blocked", "pending", "scheduled", "running") for j in by_status[s])
        assert seen["live"] == live
        assert seen["failed"] == sorted(by_status["failed"])
        assert seen["running_quick"] == sorted(j for j in by_status["running"] if int(j.split("-")[1]) % 2 == 0)
        assert seen["resources"] == (len(by_status["running"]), 64 * len(by_status["running"]))
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{name}"')
