"""The client's typed view of the API's bodies, as msgspec Structs.

They mirror `service.api.schemas` but are declared again on purpose: the client must not import the
service (it is installed on machines that never run it), and it must keep working when a newer server
adds a field, so unknown fields are ignored (msgspec's default) and every field a server might omit has a
default. Timestamps decode to timezone-aware datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "upstream_failed"})


class Resources(msgspec.Struct, frozen=True):
    cpu_units: int = 1
    memory_mb: int = 128


class RetryConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    """`max_attempts` counts the first attempt; the server's defaults apply to what is left out."""

    max_attempts: int = 3
    backoff_multiplier: float = 2.0
    initial_delay_seconds: float = 1.0
    max_delay_seconds: float = 3600.0
    jitter: float = 0.1


class Progress(msgspec.Struct, frozen=True):
    """How far the running (or last) attempt said it was: `ctx.progress(fraction, message)`."""

    fraction: float
    message: str | None = None
    at: datetime | None = None


class Attempt(msgspec.Struct, frozen=True):
    attempt: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None
    error: str | None = None
    worker_pid: int | None = None
    node: str | None = None


class Job(msgspec.Struct, frozen=True):
    job_id: str
    type: str
    status: str
    priority: str = "normal"
    payload: dict[str, Any] = {}
    resource_requirements: Resources = Resources()
    depends_on: list[str] = []
    retry_config: RetryConfig = RetryConfig()
    timeout_seconds: float | None = None
    run_at: datetime | None = None
    next_run_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempt_count: int = 0
    error: str | None = None
    result: Any = None
    position_in_queue: int | None = None
    attempts: list[Attempt] = []  # empty in list pages: `get` a job for its attempts
    cancel_requested: bool = False
    schedule_id: str | None = None  # the cron schedule whose tick submitted it
    progress: Progress | None = None  # of the current (or last) attempt
    heartbeat_at: datetime | None = None  # the current (or last) attempt's last sign of life

    @property
    def terminal(self) -> bool:
        """No further change happens on its own (a `failed` job can still be re-driven with `retry`)."""
        return self.status in TERMINAL


class Accepted(msgspec.Struct, frozen=True):
    """One job of a batch answer."""

    job_id: str
    status: str
    created_at: datetime | None = None
    priority: str = "normal"
    position_in_queue: int | None = None


class LogLine(msgspec.Struct, frozen=True):
    id: int
    timestamp: datetime
    event: str
    message: str
    attempt: int | None = None
    level: str = "info"
    data: dict[str, Any] | None = None


class Stats(msgspec.Struct, frozen=True):
    capacity: Resources
    resources_in_use: Resources
    resources_free: Resources
    jobs_by_status: dict[str, int] = {}


class Event(msgspec.Struct, frozen=True):
    """One committed status change from `WS /jobs/stream`; `seq` is gap-free and increasing."""

    seq: int
    event: str
    job_id: str
    status: str
    type: str = ""
    priority: str = "normal"
    attempt: int | None = None
    timestamp: datetime | None = None
    error: str | None = None
    progress: Progress | None = None  # with event "progress"

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class Gap(msgspec.Struct, frozen=True):
    """Events `missed_from` .. `available_from - 1` were pruned from the replay window before a resume
    could replay them: whatever they said is lost, re-read the jobs you care about."""

    missed_from: int
    available_from: int


class JobSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """One job to submit, in the API's own field names (`resource_requirements`, `retry_config`,
    `timeout_seconds`); what is left as None gets the server's default."""

    type: str
    job_id: str | None = None
    priority: str | None = None
    payload: dict[str, Any] | None = None
    resource_requirements: Resources | None = None
    depends_on: list[str] | None = None
    timeout_seconds: float | None = None
    retry_config: RetryConfig | None = None
    run_at: datetime | None = None


class Schedule(msgspec.Struct, frozen=True):
    """A cron schedule: every tick of `cron` in `timezone` submits `job` (a POST /jobs body without
    job_id) as the job `<schedule_id>:<tick>`."""

    schedule_id: str
    cron: str
    timezone: str = "UTC"
    job: dict[str, Any] = {}
    overlap: str = "allow"  # skip: no new job while the previous one is still waiting or running
    catch_up: str = "none"  # ticks missed while no scheduler ran: none, one (the latest) or all
    paused: bool = False
    next_fire_times: list[datetime] = []  # empty while paused
    last_fired_at: datetime | None = None  # the tick of the last job submitted
    last_job_id: str | None = None
    checked_through: datetime | None = None  # every tick up to here is decided
    created_at: datetime | None = None
    updated_at: datetime | None = None


class TypeControls(msgspec.Struct, frozen=True):
    """A job type with its dispatch controls and its live jobs by status (`GET /types`)."""

    type: str
    registered: bool = True
    paused: bool = False
    max_running: int | None = None
    max_starts_per_second: float | None = None
    jobs: dict[str, int] = {}


class _Page(msgspec.Struct, frozen=True):
    items: list[Job]
    next_cursor: str | None = None


class _Batch(msgspec.Struct, frozen=True):
    jobs: list[Accepted]


class _Kind(msgspec.Struct):
    event: str = ""
