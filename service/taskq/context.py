"""`JobContext`: what a handler is given besides its payload.

`ctx.log` (lines land in the job's logs), `ctx.progress(fraction, message)` and `ctx.heartbeat()` (stored
on the job, progress also streamed), and `ctx.submit(...)` (enqueue a child job). The worker and
`taskq.testing` each provide a subclass that carries these out (`_beat`, `_send`); this class holds what
both share: argument checks and the ids of children.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from . import connection
from .dag import job_spec
from .models import Job, JobSpec, Resources, RetryConfig
from .registry import JobType, payload_of

MAX_JOB_ID = 128
MAX_PROGRESS_MESSAGE = 1000  # characters kept of a progress message


class JobContext:
    """The running attempt: `job_id`, `attempt` (1 for the first), `log` (a `logging.Logger`)."""

    def __init__(self, job_id: str, attempt: int, log: logging.Logger) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.log = log
        self._children = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(job_id={self.job_id!r}, attempt={self.attempt})"

    # --- progress and liveness ----------------------------------------------------------------------

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the attempt is, 0.0 to 1.0 (and optionally what it is doing). Shown as the
        job's `progress` and streamed as a `progress` event; it also counts as a heartbeat. Cheap to call
        in a tight loop: updates are sent at most every 0.2 s, and the last one is never lost."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be a number from 0 to 1, got {fraction!r}")
        if math.isnan(fraction):
            raise ValueError("progress must be a number from 0 to 1, got nan")
        if message is not None:
            message = str(message).replace("\x00", "\ufffd")[:MAX_PROGRESS_MESSAGE]
        self._beat(float(fraction), message)

    def heartbeat(self) -> None:
        """Say the attempt is alive (a long step without progress to report): stored as the job's
        `heartbeat_at`, so a stuck handler shows as a heartbeat that stopped."""
        self._beat(None, None)

    def _beat(self, fraction: float | None, message: str | None) -> None:
        """Carry out a progress report (fraction set) or a heartbeat (fraction None)."""
        raise NotImplementedError

    # --- children ---------------------------------------------------------------------------------------

    def submit(
        self,
        type: str | JobType[..., Any],
        payload: Any = None,
        *,
        depends_on_parent: bool = False,
        job_id: str | None = None,
        priority: str | None = None,
        depends_on: Iterable[str] = (),
        run_at: datetime | None = None,
        timeout: float | None = None,
        retry: RetryConfig | dict[str, Any] | None = None,
        resources: Resources | dict[str, int] | None = None,
    ) -> Job:
        """Enqueue a child job through the service's API. `depends_on_parent=True`: the child waits
        (`blocked`) until this job has succeeded, and fails upstream if it does not.

        Unless `job_id` is given, the n-th child of this job gets the id `<job_id>.<n>`, the same in
        every attempt: a retried attempt that submits the same children again gets the existing jobs
        back (an identical replay) instead of enqueuing them twice. Submitting a different body under
        the same id is refused (taskq.Conflict), so give children that differ between attempts an id."""
        return self._send(
            self._child_spec(
                type, payload, depends_on_parent, job_id, priority, depends_on, run_at, timeout, retry, resources
            )
        )

    async def submit_async(
        self,
        type: str | JobType[..., Any],
        payload: Any = None,
        *,
        depends_on_parent: bool = False,
        job_id: str | None = None,
        priority: str | None = None,
        depends_on: Iterable[str] = (),
        run_at: datetime | None = None,
        timeout: float | None = None,
        retry: RetryConfig | dict[str, Any] | None = None,
        resources: Resources | dict[str, int] | None = None,
    ) -> Job:
        """`submit` for `async def` handlers: the request does not block the event loop."""
        return await self._send_async(
            self._child_spec(
                type, payload, depends_on_parent, job_id, priority, depends_on, run_at, timeout, retry, resources
            )
        )

    def _child_spec(
        self,
        type: str | JobType[..., Any],
        payload: Any,
        depends_on_parent: bool,
        job_id: str | None,
        priority: str | None,
        depends_on: Iterable[str],
        run_at: datetime | None,
        timeout: float | None,
        retry: RetryConfig | dict[str, Any] | None,
        resources: Resources | dict[str, int] | None,
    ) -> JobSpec:
        self._children += 1
        parents = [self.job_id] if depends_on_parent else []
        parents += [d for d in depends_on if d != self.job_id]
        return job_spec(
            type.name if isinstance(type, JobType) else type,
            payload_of(payload, {}) if payload is not None else {},
            job_id=job_id if job_id is not None else child_id(self.job_id, self._children),
            priority=priority,
            resources=resources,
            depends_on=parents or None,
            retry=retry,
            timeout=timeout,
            run_at=run_at,
        )

    def _send(self, spec: JobSpec) -> Job:
        """Submit a child (the worker's context: through the default connection, the service's own API)."""
        return connection.default_client().submit_spec(spec)

    async def _send_async(self, spec: JobSpec) -> Job:
        async with connection.async_client() as client:
            return await client.submit_spec(spec)


def child_id(parent: str, n: int) -> str:
    """`<parent>.<n>`, or a digest of it in the job id alphabet when that would exceed 128 characters."""
    plain = f"{parent}.{n}"
    if len(plain) <= MAX_JOB_ID:
        return plain
    return f"job_{hashlib.sha256(plain.encode()).hexdigest()[:32]}"
