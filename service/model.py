"""The job vocabulary shared by every actor: statuses, priorities, outcomes and resource amounts.

These are the words of the API and of the database enums; keep the three in step.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import msgspec


class Status(enum.StrEnum):
    BLOCKED = "blocked"  # waiting on dependencies
    PENDING = "pending"  # ready, waiting for resources or its turn
    SCHEDULED = "scheduled"  # waiting for run_at or a retry delay
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UPSTREAM_FAILED = "upstream_failed"  # a dependency did not succeed; it never ran

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.UPSTREAM_FAILED})
_LIVE_VALUES = frozenset(s.value for s in Status if s not in TERMINAL)


def first_status(
    dependencies: Iterable[tuple[str, str | None]], run_at: float | None, now: float
) -> tuple[Status, str | None]:
    """A new job's first status: the one rule that the API applies when it commits a job and the
    scheduler when it admits it (the scheduler may know more by then, and corrects the row).

    `dependencies` pairs each dependency with its status as far as the caller knows it, or None when it
    is not committed yet (an earlier job of the same batch); an unknown id is reported as such a word
    (e.g. "missing"). The first dependency that ended without succeeding fails the job upstream, and
    its status is in the error."""
    waiting = False
    for dep, status in dependencies:
        if status is None or status in _LIVE_VALUES:
            waiting = True
        elif status != Status.SUCCEEDED.value:
            return Status.UPSTREAM_FAILED, f"dependency {dep} {status}"
    if waiting:
        return Status.BLOCKED, None
    if run_at is not None and run_at > now:
        return Status.SCHEDULED, None
    return Status.PENDING, None


WAITING = frozenset({Status.BLOCKED, Status.PENDING, Status.SCHEDULED})


class Priority(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def level(self) -> int:
        """Priority levels as numbers: low=0 ... critical=3; aging adds to this score."""
        return _LEVELS[self]


_LEVELS = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


class Outcome(enum.StrEnum):
    """How one attempt ended. Decided in one place: `service.supervisor.outcome.classify`."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the handler raised a transient error
    PERMANENT_FAILURE = "permanent_failure"  # the handler raised PermanentError: never retried
    TIMED_OUT = "timed_out"
    CRASHED = "crashed"  # the worker died without reporting a result
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # killed by a shutdown drain: does not use up an attempt
    MEMORY_EXCEEDED = "memory_exceeded"

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {Outcome.FAILED, Outcome.TIMED_OUT, Outcome.CRASHED, Outcome.MEMORY_EXCEEDED, Outcome.INTERRUPTED}
)


class Resources(msgspec.Struct, frozen=True, gc=False):
    cpu_units: int
    memory_mb: int

    def fits_in(self, other: Resources) -> bool:
        return self.cpu_units <= other.cpu_units and self.memory_mb <= other.memory_mb

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_units + other.cpu_units, self.memory_mb + other.memory_mb)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_units - other.cpu_units, self.memory_mb - other.memory_mb)


ZERO = Resources(0, 0)


class RetryPolicy(msgspec.Struct, frozen=True, gc=False):
    max_attempts: int = 3
    backoff_multiplier: float = 2.0
    initial_delay_seconds: float = 1.0
    max_delay_seconds: float = 3600.0
    jitter: float = 0.1

    def delay_after(self, attempt: int, fraction: float) -> float:
        """Delay before attempt `attempt + 1`, counted from the end of attempt `attempt`.

        `initial × multiplier^(attempt-1)`, capped at `max_delay_seconds`, then lengthened by
        `fraction × jitter` of itself; `fraction` in [0, 1) comes from the caller's random source so
        that this stays a pure function.
        """
        exponent = max(attempt - 1, 0)
        if self.initial_delay_seconds <= 0:
            return 0.0
        try:
            base = self.initial_delay_seconds * self.backoff_multiplier**exponent
        except OverflowError:  # far past the cap anyway
            base = self.max_delay_seconds
        base = min(base, self.max_delay_seconds)
        return base * (1.0 + self.jitter * fraction)


def contains_nul(value: Any) -> bool:
    """Whether a NUL character hides in any string or key of a JSON-like value. PostgreSQL's text and jsonb
    reject it, so such a value is refused before it reaches the database, where it would fail a statement.
    Iterative: a deeply nested value must not exhaust the interpreter's recursion limit."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False
