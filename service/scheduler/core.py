"""The scheduler's decision logic: a deterministic state machine with no I/O and no clock.

The actor feeds it events (`admit`, `attempt_started`, `attempt_finished`, `cancel`, `supervisor_ready`,
`tick`) with the current time, and carries out the `Effects` it returns: status transitions and attempt
rows to write, attempts to start, workers to kill. Everything the scheduler decides is decided here, so
it is unit- and property-tested without a database, processes or sleeps.

Only live jobs (blocked, pending, scheduled, running) are held in memory; a job leaves when it becomes
terminal. The caller resolves the status of dependencies that are not held here (terminal ones) from
the database and passes them in.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from service.model import ZERO, Outcome, Resources, RetryPolicy, Status
from service.protocol import CancelVerdict, NewJob
from service.scheduler.queue import QueueKey, ReadyQueue

# ------------------------------------------------------------------------------------------------ effects


class Transition(msgspec.Struct, gc=False):
    """A job's status changed; `event` is the log vocabulary word for why."""

    job_id: str
    status: Status
    at: float
    event: str
    error: str | None = None
    next_run_at: float | None = None
    result: Any = None
    attempt: int | None = None
    data: dict[str, Any] | None = None


class Start(msgspec.Struct, gc=False):
    job_id: str
    attempt: int
    at: float
    timeout_seconds: float | None
    memory_mb: int


class CloseAttempt(msgspec.Struct, gc=False):
    job_id: str
    attempt: int
    at: float
    outcome: Outcome
    error: str | None


class Kill(msgspec.Struct, gc=False):
    job_id: str
    attempt: int
    outcome: Outcome


@dataclass
class Effects:
    transitions: list[Transition] = field(default_factory=list)
    starts: list[Start] = field(default_factory=list)
    closes: list[CloseAttempt] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.transitions or self.starts or self.closes or self.kills)


# -------------------------------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Restored:
    """A live job as the database holds it, for the rebuild at start-up."""

    job: NewJob
    attempt: int  # attempts started so far
    charged: int  # of those, the ones that count against max_attempts (not interrupted)
    ready_at: float | None
    next_run_at: float | None
    started_at: float | None


@dataclass(slots=True)
class Job:
    job_id: str
    seq: int
    level: int
    need: Resources
    timeout_seconds: float | None
    retry: RetryPolicy
    status: Status
    attempt: int = 0  # attempts started so far (the number of the last one)
    charged: int = 0  # attempts counted against max_attempts (interrupted ones are not)
    waiting_on: set[str] = field(default_factory=set)
    children: list[str] = field(default_factory=list)
    key: QueueKey | None = None  # set while pending
    due_at: float | None = None  # set while scheduled
    started_at: float | None = None  # set while running
    cancel_requested: bool = False


class SchedulerCore:
    def __init__(self, capacity: Resources, aging_interval: float, rng: random.Random | None = None) -> None:
        self.capacity = capacity
        self.used = ZERO
        self.queue = ReadyQueue(aging_interval)
        self.jobs: dict[str, Job] = {}
        self.running: dict[str, Job] = {}
        self._timers: list[tuple[float, int, str]] = []
        self._rng = rng or random.Random()
        self._effects = Effects()
        # No dispatch until the supervisor has said which attempts it still runs: resources held by
        # attempts that survived a scheduler restart must be known before anything new starts.
        self.supervisor_ready = False
        self.draining = False

    # ------------------------------------------------------------------------------------------- queries

    def take_effects(self) -> Effects:
        effects, self._effects = self._effects, Effects()
        return effects

    def position(self, job_id: str) -> int | None:
        job = self.jobs.get(job_id)
        if job is None or job.key is None:
            return None
        return self.queue.position(job.key)

    def next_wakeup(self) -> float | None:
        while self._timers:
            due, _, job_id = self._timers[0]
            job = self.jobs.get(job_id)
            if job is not None and job.status is Status.SCHEDULED and job.due_at == due:
                return due
            heapq.heappop(self._timers)  # stale entry: cancelled or already promoted
        return None

    @property
    def free(self) -> Resources:
        return self.capacity - self.used

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in (Status.BLOCKED, Status.PENDING, Status.SCHEDULED, Status.RUNNING)}
        for job in self.jobs.values():
            counts[job.status.value] += 1
        return counts

    # ---------------------------------------------------------------------------------------------- events

    def admit(self, new: NewJob, dep_status: Mapping[str, str], now: float) -> None:
        """A committed job joins (after submit, or when rebuilding from the database).

        `new.status` is what the database holds; if the scheduler knows better (a dependency finished in
        between), it emits the correcting transition.
        """
        if new.job_id in self.jobs or new.status.terminal:
            return
        job = Job(
            job_id=new.job_id,
            seq=new.seq,
            level=new.priority,
            need=Resources(new.cpu_units, new.memory_mb),
            timeout_seconds=new.timeout_seconds,
            retry=new.retry,
            status=new.status,
        )
        failed_dep: str | None = None
        for dep in new.depends_on:
            parent = self.jobs.get(dep)
            if parent is not None:
                job.waiting_on.add(dep)
                parent.children.append(job.job_id)
            elif dep_status.get(dep) != Status.SUCCEEDED:
                failed_dep = dep
        self.jobs[job.job_id] = job
        if failed_dep is not None:
            self._fail_upstream(job, failed_dep, dep_status.get(failed_dep, "missing"), now)
        elif job.waiting_on:
            self._set(job, Status.BLOCKED, now, "blocked")
        elif new.run_at is not None and new.run_at > now:
            self._schedule(job, new.run_at, now, "scheduled")
        else:
            self._make_pending(job, new.created_at if new.status is Status.PENDING else now, now)

    def restore(self, item: Restored, dep_status: Mapping[str, str], now: float) -> None:
        """Rebuild one live job from its database row, keeping its place in line and its holdings."""
        new, attempt, charged = item.job, item.attempt, item.charged
        ready_at, next_run_at, started_at = item.ready_at, item.next_run_at, item.started_at
        if new.status is Status.RUNNING:
            job = Job(
                job_id=new.job_id,
                seq=new.seq,
                level=new.priority,
                need=Resources(new.cpu_units, new.memory_mb),
                timeout_seconds=new.timeout_seconds,
                retry=new.retry,
                status=Status.RUNNING,
                attempt=attempt,
                charged=charged,
                started_at=started_at if started_at is not None else now,
            )
            self.jobs[job.job_id] = job
            self.running[job.job_id] = job
            self.used = self.used + job.need
            return
        if new.status is Status.PENDING and ready_at is not None:
            new = msgspec.structs.replace(new, created_at=ready_at)
        elif new.status is Status.SCHEDULED and next_run_at is not None:
            new = msgspec.structs.replace(new, run_at=next_run_at)
        self.admit(new, dep_status, now)
        admitted = self.jobs.get(new.job_id)
        if admitted is not None:
            admitted.attempt, admitted.charged = attempt, charged

    def restore_all(self, items: list[Restored], dep_status: Mapping[str, str], now: float) -> None:
        """Rebuild from the database at start-up: parents before children, so edges link up."""
        by_id = {item.job.job_id: item for item in items}
        done: set[str] = set()

        def visit(item: Restored) -> None:
            stack = [(item, iter(item.job.depends_on))]
            while stack:
                current, deps = stack[-1]
                dep = next(deps, None)
                if dep is None:
                    stack.pop()
                    if current.job.job_id not in done:
                        done.add(current.job.job_id)
                        self.restore(current, dep_status, now)
                elif dep in by_id and dep not in done:
                    stack.append((by_id[dep], iter(by_id[dep].job.depends_on)))

        for item in items:
            visit(item)

    def supervisor_ready_with(self, running: Iterable[tuple[str, int]], now: float) -> None:
        """The supervisor (re)connected and runs exactly `running`; every other running attempt is lost."""
        alive = set(running)
        for job in list(self.running.values()):
            if (job.job_id, job.attempt) not in alive:
                self.attempt_finished(
                    job.job_id, job.attempt, Outcome.CRASHED, "worker lost: no supervisor runs it", None, now
                )
        for job_id, attempt in alive:
            held = self.running.get(job_id)
            if held is None or held.attempt != attempt:
                # The supervisor runs something this scheduler already closed: stop it, its result is void.
                self._effects.kills.append(Kill(job_id, attempt, Outcome.CANCELLED))
        self.supervisor_ready = True

    def supervisor_lost(self) -> None:
        self.supervisor_ready = False

    def attempt_finished(
        self, job_id: str, attempt: int, outcome: Outcome, error: str | None, result: Any, now: float
    ) -> bool:
        """Fenced: only the job's current running attempt may end it. Returns whether it was accepted."""
        job = self.running.get(job_id)
        if job is None or job.attempt != attempt:
            return False
        del self.running[job_id]
        self.used = self.used - job.need
        job.started_at = None
        if job.cancel_requested and outcome is not Outcome.SUCCEEDED:
            outcome = Outcome.CANCELLED
        self._effects.closes.append(CloseAttempt(job_id, attempt, now, outcome, error))
        if outcome is Outcome.SUCCEEDED:
            self._succeed(job, result, now)
        elif outcome is Outcome.CANCELLED:
            self._finish(job, Status.CANCELLED, now, "cancelled", error="cancelled while running")
        elif outcome is Outcome.INTERRUPTED:
            # A drain stopped it: back in line without using up an attempt.
            job.charged -= 1
            self._make_pending(job, now, now, event="interrupted")
        elif outcome.retryable and job.charged < job.retry.max_attempts:
            delay = job.retry.delay_after(job.charged, self._rng.random())
            self._schedule(
                job,
                now + delay,
                now,
                "retry_scheduled",
                error=error,
                data={"delay_seconds": round(delay, 3), "outcome": outcome.value, "attempt": attempt},
            )
        else:
            event = "failed" if outcome in (Outcome.FAILED, Outcome.PERMANENT_FAILURE) else outcome.value
            self._finish(job, Status.FAILED, now, event, error=error or outcome.value)
        return True

    def attempt_started(self, job_id: str, attempt: int) -> bool:
        job = self.running.get(job_id)
        return job is not None and job.attempt == attempt

    def cancel(self, job_id: str, now: float) -> CancelVerdict:
        job = self.jobs.get(job_id)
        if job is None:
            return "not_waiting"
        if job.status is Status.RUNNING:
            if not job.cancel_requested:
                job.cancel_requested = True
                self._effects.kills.append(Kill(job_id, job.attempt, Outcome.CANCELLED))
            return "cancel_requested"
        self._finish(job, Status.CANCELLED, now, "cancelled", error="cancelled before it ran")
        return "cancelled"

    def tick(self, now: float) -> None:
        """Promote scheduled jobs that are due, then start what fits."""
        while (due := self.next_wakeup()) is not None and due <= now:
            _, _, job_id = heapq.heappop(self._timers)
            self._make_pending(self.jobs[job_id], now, now)
        self._dispatch(now)

    # ---------------------------------------------------------------------------------------- internals

    def _dispatch(self, now: float) -> None:
        """Strict order: start the head while it fits; a head that does not fit waits for room."""
        if not self.supervisor_ready or self.draining:
            return
        while (key := self.queue.head()) is not None:
            job = self.jobs[key[2]]
            if not job.need.fits_in(self.free):
                return
            self.queue.remove(key)
            job.key = None
            job.attempt += 1
            job.charged += 1
            job.status = Status.RUNNING
            job.started_at = now
            self.running[job.job_id] = job
            self.used = self.used + job.need
            self._effects.starts.append(Start(job.job_id, job.attempt, now, job.timeout_seconds, job.need.memory_mb))

    def _set(self, job: Job, status: Status, now: float, event: str, **extra: Any) -> None:
        if job.status is status and event in ("blocked", "scheduled") and not extra:
            return  # already committed in this state: nothing to write
        job.status = status
        self._effects.transitions.append(Transition(job.job_id, status, now, event, **extra))

    def _make_pending(self, job: Job, ready_at: float, now: float, event: str = "ready") -> None:
        was_committed_pending = job.status is Status.PENDING and job.key is None and event == "ready"
        job.due_at = None
        job.key = self.queue.key(ready_at=ready_at, level=job.level, seq=job.seq, job_id=job.job_id)
        self.queue.add(job.key)
        if was_committed_pending:
            return
        job.status = Status.PENDING
        self._effects.transitions.append(Transition(job.job_id, Status.PENDING, now, event))

    def _schedule(self, job: Job, due: float, now: float, event: str, **extra: Any) -> None:
        job.due_at = due
        heapq.heappush(self._timers, (due, job.seq, job.job_id))
        if job.status is Status.SCHEDULED and event == "scheduled":
            return
        job.status = Status.SCHEDULED
        self._effects.transitions.append(Transition(job.job_id, Status.SCHEDULED, now, event, next_run_at=due, **extra))

    def _leave_waiting(self, job: Job) -> None:
        if job.key is not None:
            self.queue.remove(job.key)
            job.key = None
        job.due_at = None  # its timer entry turns stale

    def _succeed(self, job: Job, result: Any, now: float) -> None:
        self._finish(job, Status.SUCCEEDED, now, "succeeded", result=result)
        for child_id in job.children:
            child = self.jobs.get(child_id)
            if child is None or child.status is not Status.BLOCKED:
                continue
            child.waiting_on.discard(job.job_id)
            if not child.waiting_on:
                self._make_pending(child, now, now)

    def _finish(self, job: Job, status: Status, now: float, event: str, **extra: Any) -> None:
        self._leave_waiting(job)
        job.status = status
        del self.jobs[job.job_id]
        self._effects.transitions.append(Transition(job.job_id, status, now, event, **extra))
        if status is not Status.SUCCEEDED:
            for child_id in job.children:
                child = self.jobs.get(child_id)
                if child is not None:
                    self._fail_upstream(child, job.job_id, status.value, now)

    def _fail_upstream(self, job: Job, dep: str, dep_status: str, now: float) -> None:
        self._finish(job, Status.UPSTREAM_FAILED, now, "upstream_failed", error=f"dependency {dep} {dep_status}")
