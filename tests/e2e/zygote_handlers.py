"""A user handler module (TASKQ_HANDLERS=tests.e2e.zygote_handlers) for test_zygote: it reports what its
worker process looks like from the inside."""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Any

from service.handlers import JobContext, job_type


@job_type("zygote_probe")
async def probe(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    # A thread's result comes back through the loop's self-pipe: it must be this worker's own.
    pid = await asyncio.to_thread(os.getpid)
    return {"pid": pid, "ppid": os.getppid(), "fds": len(os.listdir("/proc/self/fd"))}


@job_type("plain_sum")
def plain_sum(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A plain `def` handler, as a Celery user writes them: called directly, its return is the result."""
    ctx.log.info("adding %s", payload["numbers"])
    return {"sum": sum(payload["numbers"]), "pid": os.getpid()}


@job_type("starts_a_child")
async def starts_a_child(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Starts a long-lived subprocess, says its pid, then waits: only a kill ends this attempt."""
    child = subprocess.Popen(["sleep", "3600"])  # noqa: ASYNC220 - the subprocess must outlive this call
    ctx.log.info("child %d", child.pid)
    await asyncio.sleep(3600)
