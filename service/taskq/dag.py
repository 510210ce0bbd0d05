"""The DAG builder: jobs and their edges, collected client-side and submitted as one batch.

Edges need ids before anything exists on the server, so a job added without an id gets one here, in the
server's own form (`job_<uuid4 hex>`). That also makes the batch idempotent: every job has an id, so a
submit of the same `Dag` can be retried safely.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from .models import JobSpec, Resources, RetryConfig


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


def job_spec(
    type: str,
    payload: dict[str, Any] | None = None,
    *,
    job_id: str | None = None,
    priority: str | None = None,
    resources: Resources | dict[str, int] | None = None,
    depends_on: Iterable[str | JobSpec] | None = None,
    retry: RetryConfig | dict[str, Any] | None = None,
    timeout: float | None = None,
    run_at: datetime | None = None,
) -> JobSpec:
    """A `JobSpec` from the client's argument names (`resources`, `retry`, `timeout`)."""
    return JobSpec(
        type=type,
        job_id=job_id,
        priority=priority,
        payload=payload,
        resource_requirements=Resources(**resources) if isinstance(resources, dict) else resources,
        depends_on=None if depends_on is None else [d if isinstance(d, str) else _id_of(d) for d in depends_on],
        timeout_seconds=timeout,
        retry_config=RetryConfig(**retry) if isinstance(retry, dict) else retry,
        run_at=run_at,
    )


def _id_of(spec: JobSpec) -> str:
    if spec.job_id is None:
        raise ValueError(f"a {spec.type!r} job without a job_id cannot be depended on; add it to the dag first")
    return spec.job_id


class DagBuilder:
    """`add` jobs (each returns its `JobSpec`, with its id), then submit them all as one batch."""

    def __init__(self, new_id: Callable[[], str] = new_job_id) -> None:
        self._new_id = new_id
        self._jobs: list[JobSpec] = []
        self._ids: set[str] = set()

    def add(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        job_id: str | None = None,
        depends_on: Iterable[str | JobSpec] = (),
        priority: str | None = None,
        resources: Resources | dict[str, int] | None = None,
        retry: RetryConfig | dict[str, Any] | None = None,
        timeout: float | None = None,
        run_at: datetime | None = None,
    ) -> JobSpec:
        job_id = job_id if job_id is not None else self._new_id()
        if job_id in self._ids:
            raise ValueError(f"job_id {job_id!r} is already in this dag")
        spec = job_spec(
            type,
            payload,
            job_id=job_id,
            priority=priority,
            resources=resources,
            depends_on=list(depends_on) or None,
            retry=retry,
            timeout=timeout,
            run_at=run_at,
        )
        self._ids.add(job_id)
        self._jobs.append(spec)
        return spec

    @property
    def jobs(self) -> Sequence[JobSpec]:
        return tuple(self._jobs)
