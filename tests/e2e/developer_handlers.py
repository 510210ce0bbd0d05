"""A user handler module (TASKQ_HANDLERS=tests.e2e.developer_handlers) for test_developer_surface, written
the way the README tells users to: `from taskq import ...` only, typed payloads, per-type defaults."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import httpx
import msgspec
from taskq import JobContext, PermanentError, job_type


class Email(msgspec.Struct, forbid_unknown_fields=True):
    to: str
    subject: str = "hello"


@job_type("dev_email", retry={"max_attempts": 5}, timeout=30, priority="high", resources={"memory_mb": 64})
async def send_email(ctx: JobContext, payload: Email) -> dict[str, Any]:
    """Typed payload: the handler gets an `Email`, never a dict."""
    if not payload.to:
        raise PermanentError("no recipient")
    ctx.log.info("sending %r to %s", payload.subject, payload.to)
    return {"to": payload.to, "subject": payload.subject, "kind": type(payload).__name__}


@dataclasses.dataclass
class Numbers:
    values: list[int]


@job_type("dev_sum")
def add_up(ctx: JobContext, payload: Numbers) -> dict[str, Any]:
    """A plain `def` handler with a dataclass payload."""
    return {"sum": sum(payload.values), "kind": type(payload).__name__}


@job_type("dev_progress")
async def report_progress(ctx: JobContext, payload: dict[str, Any]) -> dict[str, int]:
    """A tight loop of progress reports: the worker must throttle them and keep the last one."""
    calls = int(payload["calls"])
    for i in range(calls):
        ctx.progress(i / calls, f"step {i}")
    ctx.progress(1.0, "done")
    return {"calls": calls + 1}


@job_type("dev_heartbeat")
async def beat_until_released(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Heartbeats, then waits for a file the test creates: it runs exactly as long as the test needs."""
    ctx.heartbeat()
    ctx.progress(0.25, "waiting for the release file")
    # Polled: the releaser is another process, and a stat costs microseconds.
    while not os.path.exists(payload["release_file"]):  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.01)


@job_type("dev_parent")
async def fan_out(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Children through the service's own API: one free, one that waits for this job to succeed, one
    through a job type's `defer` (which reads the same connection)."""
    free = ctx.submit("dev_sum", {"values": [1, 2, 3]})
    after = await ctx.submit_async(send_email, Email(to="child@example.com"), depends_on_parent=True)
    deferred = add_up.options(job_id=f"{ctx.job_id}.deferred").defer(values=[4, 5])
    return {"free": free.job_id, "after": after.job_id, "after_status": after.status, "deferred": deferred.job_id}


@job_type("dev_credential")
def try_the_credential(ctx: JobContext, payload: dict[str, Any]) -> dict[str, int]:
    """What the workers' credential may do besides submitting: nothing (reads are refused)."""
    headers = {"Authorization": f"Bearer {os.environ['TASKQ_API_KEY']}"}
    with httpx.Client(base_url=os.environ["TASKQ_URL"], headers=headers) as http:
        return {"stats": http.get("/stats").status_code, "dlq": http.get("/dlq").status_code}
