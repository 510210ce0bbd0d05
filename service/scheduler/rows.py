"""What a scheduler turn writes: the core's effects, and the writes the actor deferred, mapped to the
store's rows and the stream's events. No I/O: the actor hands the result to `gateway.apply_turn`.

Also the other direction: a `scheduler_jobs` row back into what the core restores (`restored_from_row`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.model import Priority, RetryPolicy, Status
from service.protocol import JobEvent, NewJob
from service.scheduler.beats import Beat
from service.scheduler.core import Effects, Restored, Transition
from service.store import gateway
from service.store.gateway import AttemptChange, JobChange, LiveJob, LogRow

PRIORITY_NAMES = {p.level: p.value for p in Priority}


class EventNumbers:
    """The stream's gap-free sequence: each event of a committed turn takes the next number."""

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def event(
        self,
        at: float,
        job_id: str,
        job_type: str,
        level: int,
        status: Status,
        event: str,
        attempt: int | None = None,
        error: str | None = None,
    ) -> JobEvent:
        self.last += 1
        return JobEvent(self.last, at, job_id, job_type, PRIORITY_NAMES[level], status.value, event, attempt, error)

    def of_turn(self, effects: Effects, beats: list[Beat]) -> list[JobEvent]:
        """The turn's progress reports (said while their attempts ran, so first), transitions and starts."""
        events = []
        for beat in beats:
            if beat.progress_at is not None:
                event = self.event(
                    beat.progress_at, beat.job_id, beat.job_type, beat.level, Status.RUNNING, "progress", beat.attempt
                )
                event.progress, event.message = beat.progress, beat.message
                events.append(event)
        for t in effects.transitions:
            events.append(self.event(t.at, t.job_id, t.job_type, t.level, t.status, t.event, t.attempt, t.error))
        for start in effects.starts:
            events.append(
                self.event(
                    start.at, start.job_id, start.job_type, start.level, Status.RUNNING, "started", start.attempt
                )
            )
        return events


@dataclass
class TurnRows:
    """One turn's rows, each job and each attempt once (PostgreSQL applies one update per row in a
    statement, so the changes of a row within the turn are merged here: the last one stands)."""

    attempts: list[AttemptChange] = field(default_factory=list)
    opened: list[tuple[str, int, float, str | None]] = field(default_factory=list)
    jobs: list[JobChange] = field(default_factory=list)
    logs: list[LogRow] = field(default_factory=list)


def turn_rows(effects: Effects, logs: list[LogRow], pids: list[tuple[str, int, int]], beats: list[Beat]) -> TurnRows:
    jobs: dict[str, JobChange] = {}
    for t in effects.transitions:  # several changes of one job in a turn: the last one stands
        result = gateway.json_text(t.result) if t.status is Status.SUCCEEDED else None
        jobs[t.job_id] = JobChange(t.job_id, t.status.value, t.at, t.error, result, t.next_run_at, t.charged)
    for start in effects.starts:  # a start comes after any transition of the same turn
        jobs[start.job_id] = JobChange(
            start.job_id,
            Status.RUNNING.value,
            start.at,
            charged=start.charged,
            attempt=start.attempt,
            started=True,
            dispatched_to=start.dispatched_to,
            node=start.node,
        )
    attempts: dict[tuple[str, int], AttemptChange] = {}
    for close in effects.closes:
        attempts[(close.job_id, close.attempt)] = AttemptChange(
            close.job_id, close.attempt, close.at, close.outcome.value, close.error
        )
    for job_id, attempt, pid in pids:
        change = attempts.setdefault((job_id, attempt), AttemptChange(job_id, attempt))
        change.pid = pid
    for beat in beats:
        beat.apply(attempts.setdefault((beat.job_id, beat.attempt), AttemptChange(beat.job_id, beat.attempt)))
    return TurnRows(
        attempts=list(attempts.values()),
        opened=[(s.job_id, s.attempt, s.at, s.node) for s in effects.starts],
        jobs=list(jobs.values()),
        logs=logs + [log_line(t) for t in effects.transitions],
    )


_EVENT_MESSAGES = {
    "blocked": "waiting for dependencies",
    "ready": "ready to run",
    "scheduled": "waiting until its run_at time",
    "succeeded": "succeeded",
    "cancelled": "cancelled",
    "interrupted": "interrupted by shutdown; back in the queue",
}


def log_line(t: Transition) -> LogRow:
    """A transition as a line of the job's log."""
    if t.event == "retry_scheduled" and t.data is not None:
        message = f"retry in {t.data['delay_seconds']}s after {t.data['outcome']}: {t.error}"
    elif t.error:
        message = f"{t.event}: {t.error}"
    else:
        message = _EVENT_MESSAGES.get(t.event, t.event)
    level = "error" if t.status in (Status.FAILED, Status.UPSTREAM_FAILED) else "info"
    data = gateway.json_text(t.data) if t.data else None
    return LogRow(t.job_id, t.attempt, t.at, level, t.event, message, data)


def restored_from_row(row: LiveJob, node: str | None = None) -> Restored:
    """A live job as the database holds it, for the core's rebuild. `node` overrides the row's (a single
    node claims every running attempt as its own, whatever name it was started under)."""
    job = NewJob(
        job_id=row.job_id,
        type=row.type,
        seq=row.seq,
        priority=Priority(row.priority).level,
        cpu_units=row.cpu_units,
        memory_mb=row.memory_mb,
        depends_on=list(row.depends_on),
        status=Status(row.status),
        created_at=row.created_at,
        run_at=row.run_at,
        timeout_seconds=row.timeout_seconds,
        retry=RetryPolicy(
            max_attempts=row.max_attempts,
            backoff_multiplier=row.backoff_multiplier,
            initial_delay_seconds=row.initial_delay_seconds,
            max_delay_seconds=row.max_delay_seconds,
            jitter=row.jitter,
        ),
    )
    return Restored(
        job,
        row.attempt_count,
        row.charged,
        row.ready_at,
        row.next_run_at,
        row.started_at,
        row.dispatched_to,
        node or row.node,
    )
