"""Built-in job types: the ones the specification's scenarios name, simulated with `asyncio.sleep`.

Payload knobs, shared by all of them:
  duration_seconds  how long the job sleeps (default 0.05)
  fail_times        fail the first N attempts with a transient error
  busy_seconds      burn CPU in pure Python without awaiting (the timeout must still kill it)
  ignore_sigterm    true: the worker ignores SIGTERM (the kill must escalate to SIGKILL)
  exit_code         end the worker process abruptly with os._exit(code) mid-job (a crash)
  allocate_mb       hold this much memory (touched, so resident) while it sleeps
  print_lines       write this many lines to stdout (they land in the job's logs)
  huge_result       return an integer beyond 64 bits (which cannot be stored)
  nul_in            put a NUL character into "stdout", "log", "error" or "result" (PostgreSQL cannot store it)
  stray_task_seconds  leave an asyncio task behind that prints a line after this many seconds
                    (nothing awaits it: a reused worker must cancel it before its next attempt)
  spawn_child_seconds  start `sleep N` as a subprocess first, and say its pid in the log ("child <pid>"):
                    a kill of the attempt must take it down too
  release_file      wait until this file exists before sleeping: a job that runs exactly as long as its
                    caller (a test) wants, whatever the machine's speed
`invalid_operation` always raises a permanent error. `tiny_task` is `quick_task` in a reused worker
(`reuse_worker=True`): the same knobs, without a fork per attempt.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from typing import Any

from service.handlers import JobContext, PermanentError, job_type

SIMULATED_TYPES = (
    "send_email",
    "data_export",
    "generate_report",
    "report_generation",
    "data_fetch",
    "data_processing",
    "analysis",
    "report",
    "notification",
    "quick_task",
    "external_api",
    "processing",
    "long_running",
)


class TransientError(RuntimeError):
    """A simulated failure that a retry can cure."""


_STRAYS: set[asyncio.Future[None]] = set()  # referenced, so that only a cancel ends them early
_CHILDREN: list[subprocess.Popen[bytes]] = []  # referenced: a Popen collected early would warn


async def _print_later(delay: float, job_id: str) -> None:
    await asyncio.sleep(delay)
    print(f"stray task of {job_id} still running")


async def simulate(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fail_times = int(payload.get("fail_times", 0))
    ctx.log.info("attempt %d of job %s starting", ctx.attempt, ctx.job_id)
    if "spawn_child_seconds" in payload:
        # Not awaited: the child must outlive this call, so that only a kill of the attempt can end it.
        child = subprocess.Popen(["sleep", str(float(payload["spawn_child_seconds"]))])  # noqa: ASYNC220
        _CHILDREN.append(child)
        ctx.log.info("child %d", child.pid)
    release = payload.get("release_file")
    if release is not None:
        # Polled: the releaser is another process, and a stat costs microseconds.
        while not os.path.exists(str(release)):  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.01)
    for line in range(int(payload.get("print_lines", 0))):
        print(f"stdout line {line}")
    nul_in = payload.get("nul_in")
    if nul_in == "stdout":
        print("before\x00after")
    elif nul_in == "log":
        ctx.log.info("before\x00after")
    elif nul_in == "error":
        raise PermanentError("before\x00after")
    elif nul_in == "result":
        return {"text": "before\x00after"}
    if payload.get("huge_result"):
        return {"n": 2**70}
    if "stray_task_seconds" in payload:
        _STRAYS.add(asyncio.ensure_future(_print_later(float(payload["stray_task_seconds"]), ctx.job_id)))
    busy = float(payload.get("busy_seconds", 0))
    if busy > 0:
        deadline = time.monotonic() + busy
        while time.monotonic() < deadline:  # deliberately never yields to the event loop
            pass
    ballast = bytearray(int(float(payload.get("allocate_mb", 0)) * (1 << 20)))
    for offset in range(0, len(ballast), 4096):  # touch every page so it is resident
        ballast[offset] = 1
    await asyncio.sleep(float(payload.get("duration_seconds", 0.05)))
    del ballast
    if "exit_code" in payload:
        os._exit(int(payload["exit_code"]))
    if ctx.attempt <= fail_times:
        raise TransientError(f"simulated transient failure {ctx.attempt} of {fail_times}")
    return {"ok": True, "attempt": ctx.attempt, "worker_pid": os.getpid()}


for _name in SIMULATED_TYPES:
    job_type(_name)(simulate)
job_type("tiny_task", reuse_worker=True)(simulate)


@job_type("invalid_operation")
async def invalid_operation(ctx: JobContext, payload: dict[str, Any]) -> None:
    raise PermanentError(f"invalid operation: {payload.get('error', 'unsupported')}")
