"""Limits, each with a clear answer and nothing lost: rate limits per caller (429 with Retry-After),
the live-jobs cap (429 naming it), the stream clients cap (close 1013), the connections cap (503)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from tests.conftest import PgServer, Service, wait_until

LATER = "2099-01-01T00:00:00Z"  # scheduled far ahead: live, and never started
BOOTSTRAP = "bootstrap-secret-for-the-limit-tests-0123456789"


def later(**job: Any) -> dict[str, Any]:
    return {"type": "quick_task", "run_at": LATER, **job}


def assert_429(response: httpx.Response, setting: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [setting]
    assert setting in problem["detail"]


def test_submissions_beyond_the_rate_limit_are_429_and_not_created(service_factory: Callable[..., Service]) -> None:
    # A burst of 5 that refills at 2 a minute: the sixth submission is over, however slow the machine.
    service = service_factory(TASKQ_RATE_LIMIT_SUBMIT="2/m:5").start()
    created = [service.http.post("/jobs", json=later()) for _ in range(5)]
    assert [r.status_code for r in created] == [201] * 5
    assert_429(service.http.post("/jobs", json=later()), "TASKQ_RATE_LIMIT_SUBMIT")
    assert_429(service.http.post("/jobs/batch", json={"jobs": [later()]}), "TASKQ_RATE_LIMIT_SUBMIT")
    assert int(service.http.post("/jobs", json=later()).headers["retry-after"]) <= 30
    # Other requests have their own budget (unset: unlimited), and nothing refused was created.
    listed = service.http.get("/jobs", params={"limit": 100}).json()["items"]
    assert sorted(job["job_id"] for job in listed) == sorted(r.json()["job_id"] for r in created)
    assert service.http.get("/health/ready").status_code == 200


def test_each_api_key_has_its_own_request_budget(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_BOOTSTRAP_KEY=BOOTSTRAP, TASKQ_RATE_LIMIT_REQUESTS="1/m:3").start()
    admin = {"Authorization": f"Bearer {BOOTSTRAP}"}
    made = service.http.post("/keys", json={"name": "reader", "scopes": ["read"]}, headers=admin)  # 1 of 3
    assert made.status_code == 201, made.text
    reader = {"Authorization": f"Bearer {made.json()['key']}"}
    assert [service.http.get("/stats", headers=admin).status_code for _ in range(2)] == [200, 200]
    assert_429(service.http.get("/stats", headers=admin), "TASKQ_RATE_LIMIT_REQUESTS")
    assert [service.http.get("/stats", headers=reader).status_code for _ in range(3)] == [200, 200, 200]
    assert_429(service.http.get("/jobs", headers=reader), "TASKQ_RATE_LIMIT_REQUESTS")
    # A request that fails authentication spends nothing, and probes are never limited.
    assert service.http.get("/stats").status_code == 401
    assert all(service.http.get("/health/live").status_code == 200 for _ in range(10))


def test_submissions_beyond_max_live_jobs_are_429_until_jobs_finish(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_MAX_LIVE_JOBS="3").start()
    jobs = [service.submit(**later()) for _ in range(3)]
    assert_429(service.http.post("/jobs", json=later()), "TASKQ_MAX_LIVE_JOBS")
    assert_429(service.http.post("/jobs/batch", json={"jobs": [later(), later()]}), "TASKQ_MAX_LIVE_JOBS")
    assert len(service.http.get("/jobs", params={"limit": 100}).json()["items"]) == 3  # nothing else created
    assert service.http.patch(f"/jobs/{jobs[0]['job_id']}/cancel").status_code == 200
    room = wait_until(
        lambda: (r := service.http.post("/jobs", json=later())).status_code == 201 and r, what="room for one more"
    )
    assert room.json()["status"] == "scheduled"
    assert_429(service.http.post("/jobs", json=later()), "TASKQ_MAX_LIVE_JOBS")


def ws_url(service: Service) -> str:
    return f"ws://127.0.0.1:{service.port}/jobs/stream"


def test_a_stream_client_beyond_the_cap_is_closed_with_1013(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_MAX_STREAM_CLIENTS="2").start()

    async def scenario() -> tuple[int | None, str | None, dict[str, Any]]:
        async with websockets.connect(ws_url(service)) as first, websockets.connect(ws_url(service)):
            async with websockets.connect(ws_url(service)) as third:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await asyncio.wait_for(third.recv(), 10)
                code, reason = third.close_code, third.close_reason
            # The two admitted clients still get their events.
            await asyncio.to_thread(service.submit, **later())
            return code, reason, json.loads(await asyncio.wait_for(first.recv(), 10))

    code, reason, event = asyncio.run(scenario())
    assert code == 1013
    assert reason is not None
    assert "TASKQ_MAX_STREAM_CLIENTS=2" in reason
    assert event["event"] == "submitted"


def test_connections_beyond_the_cap_are_refused_with_503(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_MAX_CONNECTIONS="16").start()

    async def scenario() -> int:
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(16):  # each open WebSocket holds a connection (and a task) of the server
                await stack.enter_async_context(websockets.connect(ws_url(service)))
            return (await asyncio.to_thread(service.http.get, "/health/live")).status_code

    assert asyncio.run(scenario()) == 503
    wait_until(lambda: service.http.get("/health/live").status_code == 200, what="room again once they closed")


def test_a_key_with_its_own_rate_limit_is_held_to_it(service_factory: Callable[..., Service], pg: PgServer) -> None:
    pg_url = pg.fresh_database()
    service = service_factory(pg_url, TASKQ_BOOTSTRAP_KEY=BOOTSTRAP, TASKQ_RATE_LIMIT_SUBMIT="100/s").start()
    admin = {"Authorization": f"Bearer {BOOTSTRAP}"}
    made = service.http.post(
        "/keys",
        json={"name": "batch-loader", "scopes": ["submit"], "rate_limits": {"submit": "1/m:2"}},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    assert made.json()["rate_limits"] == {"submit": "1/m:2", "requests": None}
    own = {"Authorization": f"Bearer {made.json()['key']}"}
    assert [service.http.post("/jobs", json=later(), headers=own).status_code for _ in range(2)] == [201, 201]
    refused = service.http.post("/jobs", json=later(), headers=own)
    assert_429(refused, "rate_limits.submit")
    assert "this key's rate_limits.submit (1/m:2)" in refused.json()["detail"]
    # The node's limit still applies to the other keys (100/s: far from reached here).
    assert service.http.post("/jobs", json=later(), headers=admin).status_code == 201
    listed = {k["name"]: k for k in service.http.get("/keys", headers=admin).json()}
    assert listed["batch-loader"]["rate_limits"]["submit"] == "1/m:2"
    bad = service.http.post(
        "/keys", json={"name": "x", "scopes": ["read"], "rate_limits": {"requests": "fast"}}, headers=admin
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "rate_limits.requests"
    # The CLI takes the same limits.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "keys",
            "create",
            "--name",
            "cli",
            "--scope",
            "read",
            "--rate-requests",
            "5/s",
        ],
        env={**os.environ, "TASKQ_DATABASE_URL": pg_url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "rate limits: submit -, requests 5/s" in done.stdout
