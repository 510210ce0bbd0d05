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
import itertools
import math
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from service.dag import parents_first
from service.model import ZERO, Outcome, Resources, RetryPolicy, Status, first_status
from service.protocol import CancelVerdict, NewJob
from service.scheduler.queue import ReadyQueue
from service.scheduler.type_controls import TypeControls

BACKFILL_DEPTH = 512
HELD_SCAN_LIMIT = 10_000  # jobs held back by their type's control that one dispatch pass looks past
RECENT_TERMINAL = 100_000
COMPACT_SLACK = 1024
_LIVE = frozenset({Status.BLOCKED, Status.PENDING, Status.SCHEDULED, Status.RUNNING})

# ------------------------------------------------------------------------------------------------ effects


class Transition(msgspec.Struct, gc=False):
    """A job's status changed; `event` is the log vocabulary word for why."""

    job_id: str
    status: Status
    at: float
    event: str
    job_type: str = ""
    level: int = 0
    error: str | None = None
    next_run_at: float | None = None
    result: Any = None
    attempt: int | None = None
    data: dict[str, Any] | None = None
    charged: int | None = None  # set when the transition changes the attempts charged


class Start(msgspec.Struct, gc=False):
    job_id: str
    attempt: int
    at: float
    timeout_seconds: float | None
    memory_mb: int
    charged: int  # attempts counted against max_attempts, this one included
    backfilled: bool = False  # started past a blocked head under its reservation
    waited: float = 0.0  # seconds from ready (pending) to this start
    job_type: str = ""
    level: int = 0
    dispatched_to: str | None = None  # the supervisor instance this start is sent to
    node: str = ""  # the node it runs on


class Reservation(msgspec.Struct, gc=False):
    """The blocked head's guaranteed start: `at` (epoch seconds) on `node`, leaving `extra` free beside it
    there then. `node` is None when no node present could ever hold the head."""

    job_id: str
    at: float
    extra: Resources
    node: str | None = None


class CloseAttempt(msgspec.Struct, gc=False):
    job_id: str
    attempt: int
    at: float
    outcome: Outcome
    error: str | None
    ran_for: float = 0.0  # seconds the attempt held its resources
    job_type: str = ""
    level: int = 0


class Kill(msgspec.Struct, gc=False):
    job_id: str
    attempt: int
    outcome: Outcome
    node: str = ""  # whose executor runs the attempt


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
    dispatched_to: str | None = None  # of a running job: the supervisor instance its start was sent to
    node: str | None = None  # of a running job: the node it runs on


@dataclass(slots=True)
class Node:
    """One executor's ledger: what it offers, what its running attempts hold, and whether it takes work."""

    name: str
    capacity: Resources
    used: Resources = ZERO
    ready: bool = False  # its supervisor is connected and has said which attempts it runs
    draining: bool = False  # it is stopping: nothing new is placed on it
    instance: str | None = None  # of its connected supervisor (its Hello says it)
    running: int = 0

    @property
    def free(self) -> Resources:
        return self.capacity - self.used

    @property
    def takes_work(self) -> bool:
        return self.ready and not self.draining


@dataclass(slots=True, kw_only=True)
class Job:
    # The fields a queue lookup reads come first, in the object's first cache line: at a million live
    # jobs every other line of the object is a likely cache miss for `position`.
    seq: int
    level: int
    ready_at: float | None = None  # set while pending: when it joined the queue
    job_id: str
    type: str
    need: Resources
    timeout_seconds: float | None
    retry: RetryPolicy
    status: Status
    attempt: int = 0  # attempts started so far (the number of the last one)
    charged: int = 0  # attempts counted against max_attempts (interrupted ones are not)
    # Allocated on first use: most jobs have no dependencies and no dependants, and at a million live
    # jobs an empty set and list each would cost about 270 bytes per job.
    waiting_on: set[str] | None = None
    children: list[str] | None = None
    due_at: float | None = None  # set while scheduled
    started_at: float | None = None  # set while running
    run_at: float | None = None  # not before this time, even once its dependencies have succeeded
    cancel_requested: bool = False
    interrupt_requested: bool = False
    dispatched_to: str | None = None  # set while running: the supervisor instance its start went to
    node: str = ""  # set while running: the node it runs on

    def wait_for(self, dep: str) -> None:
        if self.waiting_on is None:
            self.waiting_on = set()
        self.waiting_on.add(dep)

    def add_child(self, child_id: str) -> None:
        if self.children is None:
            self.children = []
        self.children.append(child_id)


class SchedulerCore:
    """`capacity` declares a single node (named `node`) up front, as a single-node service does; a
    cluster's leader passes None and learns each node from its executor's Hello (`node_ready`)."""

    def __init__(
        self,
        capacity: Resources | None,
        aging_interval: float,
        rng: random.Random | None = None,
        *,
        kill_grace: float = 2.0,
        node: str = "local",
    ) -> None:
        self.kill_grace = kill_grace
        self.reservation: Reservation | None = None
        # Every node by name, in the order they joined. Placement and backfill work per node; the totals
        # below are for metrics and /stats.
        self.nodes: dict[str, Node] = {}
        self.default_node = node
        if capacity is not None:
            self.nodes[node] = Node(node, capacity)
        self.queue = ReadyQueue(aging_interval)
        self.jobs: dict[str, Job] = {}
        self.running: dict[str, Job] = {}
        self._timers: list[tuple[float, int, str]] = []
        self._awaiting_parent: dict[str, list[str]] = {}
        self.recently_finished: OrderedDict[str, Status] = OrderedDict()
        # Live jobs by (status, priority level), kept as they change: metrics read it in O(1).
        self.depth: Counter[tuple[Status, int]] = Counter()
        self._status_depth: Counter[Status] = Counter()  # the same, summed over priorities
        # (ready_at, seq, job_id) of pending jobs, lazily cleaned: the oldest waiting job for metrics.
        self._pending_since: list[tuple[float, int, str]] = []
        self._rng = rng or random.Random()
        self._effects = Effects()
        # A node takes no work until its supervisor has said which attempts it still runs: resources held
        # by attempts that survived a scheduler restart must be known before anything new starts there.
        self.draining = False
        # Set whenever the outcome of a dispatch pass could differ from the last one's.
        self._queue_changed = True
        self._zero_cpu_pending = 0
        self._zero_mem_pending = 0
        self.controls = TypeControls()  # per-type pause, max_running, max_starts_per_second

    # ------------------------------------------------------------------------------------------- queries

    def take_effects(self) -> Effects:
        effects, self._effects = self._effects, Effects()
        return effects

    def position(self, job_id: str) -> int | None:
        job = self.jobs.get(job_id)
        if job is None or job.ready_at is None:
            return None
        return self.queue.position(job.ready_at, job.level, job.seq)

    def next_wakeup(self) -> float | None:
        while self._timers:
            due, _, job_id = self._timers[0]
            job = self.jobs.get(job_id)
            if job is not None and job.status is Status.SCHEDULED and job.due_at == due:
                return due
            heapq.heappop(self._timers)  # stale entry: cancelled or already promoted
        return None

    @property
    def capacity(self) -> Resources:
        return sum((n.capacity for n in self.nodes.values()), ZERO)

    @property
    def used(self) -> Resources:
        return sum((n.used for n in self.nodes.values()), ZERO)

    @property
    def free(self) -> Resources:
        return self.capacity - self.used

    @property
    def supervisor_ready(self) -> bool:
        """Some node takes work."""
        return any(n.ready for n in self.nodes.values())

    def largest_node(self) -> Resources:
        """The most CPU units and memory any one node offers (each on its own): a job needing more than
        this can never run."""
        return Resources(
            max((n.capacity.cpu_units for n in self.nodes.values()), default=0),
            max((n.capacity.memory_mb for n in self.nodes.values()), default=0),
        )

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((s.value for s in (Status.BLOCKED, Status.PENDING, Status.SCHEDULED, Status.RUNNING)), 0)
        for (status, _), n in self.depth.items():
            if status.value in counts:
                counts[status.value] += n
        return counts

    def oldest_pending_since(self) -> float | None:
        """When the longest-waiting pending job became ready (amortised O(log n))."""
        while self._pending_since:
            ready_at, _, job_id = self._pending_since[0]
            job = self.jobs.get(job_id)
            if job is not None and job.ready_at == ready_at:
                return ready_at
            heapq.heappop(self._pending_since)
        return None

    def explain(self, job_id: str, now: float) -> dict[str, Any] | None:
        """Why this job is not running (or what it is doing), from the scheduler's own state."""
        job = self.jobs.get(job_id)
        if job is None:
            return None
        info: dict[str, Any] = {"status": job.status.value, "attempts_so_far": job.attempt}
        if job.status is Status.BLOCKED:
            waiting = sorted(job.waiting_on or ())
            info["waiting_on"] = waiting
            info["reason"] = f"waiting for {len(waiting)} dependenc{'y' if len(waiting) == 1 else 'ies'}: " + ", ".join(
                waiting
            )
        elif job.status is Status.SCHEDULED:
            info["next_run_at"] = job.due_at
            why = f"a retry after attempt {job.attempt}" if job.attempt else "its run_at time"
            info["reason"] = f"waiting for {why}, {max(0.0, (job.due_at or now) - now):.1f}s from now"
        elif job.status is Status.RUNNING:
            info["started_at"] = job.started_at
            if job.timeout_seconds is not None and job.started_at is not None:
                info["deadline"] = job.started_at + job.timeout_seconds
            info["node"] = job.node
            info["reason"] = f"running attempt {job.attempt} on node {job.node}" + (
                " (cancel requested)" if job.cancel_requested else ""
            )
        else:
            info.update(self._explain_pending(job, now))
        return info

    def _explain_pending(self, job: Job, now: float) -> dict[str, Any]:
        ready_at = job.ready_at
        assert ready_at is not None
        free = self.free
        info: dict[str, Any] = {
            "position_in_queue": self.queue.position(ready_at, job.level, job.seq),
            "effective_priority": round(self.queue.effective_priority(ready_at, job.level, now), 3),
            "base_priority_level": job.level,
            "waiting_seconds": round(now - ready_at, 3),
            "needs": {"cpu_units": job.need.cpu_units, "memory_mb": job.need.memory_mb},
            "free": {"cpu_units": free.cpu_units, "memory_mb": free.memory_mb},
        }
        shortfall = {
            name: need - have
            for name, need, have in (
                ("cpu_units", job.need.cpu_units, free.cpu_units),
                ("memory_mb", job.need.memory_mb, free.memory_mb),
            )
            if need > have
        }
        if shortfall:
            info["shortfall"] = shortfall
        if len(self.nodes) > 1:
            info["free_by_node"] = {
                n.name: {"cpu_units": n.free.cpu_units, "memory_mb": n.free.memory_mb}
                for n in self.nodes.values()
                if n.takes_work
            }
        reservation = self.reservation
        if reservation is not None:
            info["reservation"] = {
                "job_id": reservation.job_id,
                "node": reservation.node,
                "until": None if math.isinf(reservation.at) else reservation.at,
                "left_over": {"cpu_units": reservation.extra.cpu_units, "memory_mb": reservation.extra.memory_mb},
            }
        takers = [n for n in self.nodes.values() if n.takes_work]
        held = self.controls.admits(job.type, now)
        if held is not None:
            info["type_control"] = held
        if not takers:
            info["reason"] = "dispatch is paused: no supervisor is connected"
        elif self.draining:
            info["reason"] = "the service is draining: nothing new starts"
        elif held is not None:
            info["reason"] = f"{held}: it keeps its place in line and waits; other types pass it"
        elif not any(job.need.fits_in(n.capacity) for n in takers):
            info["reason"] = "needs more than any node taking work offers; it waits for a node that can hold it"
        elif reservation is not None and reservation.job_id == job.job_id:
            needs = ", ".join(f"{v} more {k}" for k, v in shortfall.items()) or "more than any one node has free"
            where = f" on node {reservation.node}" if len(self.nodes) > 1 and reservation.node else ""
            info["reason"] = (
                f"first in line but needs {needs}; resources are reserved for it{where} as running jobs end"
            )
        elif reservation is not None:
            info["reason"] = (
                f"behind {reservation.job_id}, which holds a reservation; this job may start early only if it "
                "ends before that reservation or fits in what it leaves over"
            )
        elif shortfall:
            info["reason"] = "needs " + ", ".join(f"{v} more {k}" for k, v in shortfall.items())
        else:
            info["reason"] = "ready: it starts at the next dispatch"
        return info

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
            type=new.type,
            seq=new.seq,
            level=new.priority,
            need=Resources(new.cpu_units, new.memory_mb),
            timeout_seconds=new.timeout_seconds,
            retry=new.retry,
            status=new.status,
            run_at=new.run_at,
        )
        known: list[tuple[str, str | None]] = []  # each dependency with its status as known here
        for dep in new.depends_on:
            parent = self.jobs.get(dep)
            if parent is not None:
                job.wait_for(dep)
                parent.add_child(job.job_id)
                known.append((dep, parent.status.value))
            elif (recent := self.recently_finished.get(dep)) is not None:
                known.append((dep, recent.value))
            elif dep_status.get(dep) in _LIVE:
                # Committed and live, but not admitted here yet (it is on its way): link when it arrives.
                job.wait_for(dep)
                self._awaiting_parent.setdefault(dep, []).append(job.job_id)
                known.append((dep, dep_status[dep]))
            else:
                known.append((dep, dep_status.get(dep, "missing")))
        self.jobs[job.job_id] = job
        self._count(job, job.status, +1)
        for child_id in self._awaiting_parent.pop(job.job_id, ()):
            job.add_child(child_id)
        status, error = first_status(known, new.run_at, now)
        if status is Status.UPSTREAM_FAILED:
            self._finish(job, Status.UPSTREAM_FAILED, now, "upstream_failed", error=error)
        elif status is Status.BLOCKED:
            self._set(job, Status.BLOCKED, now, "blocked")
        elif status is Status.SCHEDULED:
            assert new.run_at is not None
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
                type=new.type,
                seq=new.seq,
                level=new.priority,
                need=Resources(new.cpu_units, new.memory_mb),
                timeout_seconds=new.timeout_seconds,
                retry=new.retry,
                status=Status.RUNNING,
                attempt=attempt,
                charged=charged,
                started_at=started_at if started_at is not None else now,
                dispatched_to=item.dispatched_to,
                node=item.node or self.default_node,
            )
            self.jobs[job.job_id] = job
            self._count(job, job.status, +1)
            self.running[job.job_id] = job
            self._hold(job)
            self.controls.adopt(job.type)
            self._queue_changed = True
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
        for item in _parents_first(items):
            self.restore(item, dep_status, now)

    def supervisor_ready_with(
        self, running: Iterable[tuple[str, int]], now: float, instance: str | None = None
    ) -> None:
        """The single node's supervisor (re)connected: see `node_ready`."""
        self.node_ready(self.default_node, None, running, now, instance)

    def node_ready(
        self,
        name: str,
        capacity: Resources | None,
        running: Iterable[tuple[str, int]],
        now: float,
        instance: str | None = None,
    ) -> None:
        """A node's supervisor (re)connected and runs exactly `running`; every other attempt this scheduler
        holds as running on that node is lost. `capacity` is what the node offers (None: as declared).

        How it was lost decides what it cost. A supervisor keeps every attempt it was given until its
        report is acknowledged, across scheduler restarts and reconnects; so an attempt whose start was
        sent to this very supervisor `instance` and that it does not own never reached it (the scheduler
        stopped, or lost the link, between the start's commit and its delivery): it never ran, and goes
        back in line without using up an attempt. One sent to another instance (a supervisor since
        restarted, whose workers died with it) may have run: that is a crash."""
        node = self._node(name)
        if capacity is not None:
            node.capacity = capacity
        alive = set(running)
        for job in [j for j in self.running.values() if j.node == name]:
            if (job.job_id, job.attempt) not in alive:
                if instance is not None and job.dispatched_to == instance:
                    outcome, error = Outcome.INTERRUPTED, "never reached a worker: its start was not delivered"
                else:
                    outcome, error = Outcome.CRASHED, "worker lost: no supervisor runs it"
                self.attempt_finished(job.job_id, job.attempt, outcome, error, None, now)
        for job_id, attempt in alive:
            held = self.running.get(job_id)
            if held is None or held.attempt != attempt or held.node != name:
                # The supervisor runs something this scheduler already closed (or placed elsewhere):
                # stop it, its result is void.
                self._effects.kills.append(Kill(job_id, attempt, Outcome.CANCELLED, name))
            elif held.cancel_requested or held.interrupt_requested:
                # A kill decided while no supervisor was connected never reached one: ask again (the
                # supervisor ignores a second kill of a worker it is already stopping).
                outcome = Outcome.CANCELLED if held.cancel_requested else Outcome.INTERRUPTED
                self._effects.kills.append(Kill(job_id, attempt, outcome, name))
        node.ready = True
        node.draining = False
        node.instance = instance
        self._queue_changed = True

    def supervisor_lost(self) -> None:
        self.node_lost(self.default_node)

    def node_lost(self, name: str) -> None:
        """A node's supervisor disconnected or is stopping: nothing new goes there. Its attempts stay held
        (it keeps running them, and says so when it reconnects) until `node_expired`."""
        node = self.nodes.get(name)
        if node is not None:
            node.ready = False

    def node_draining(self, name: str) -> None:
        """A node is draining: nothing new is placed on it; what runs there may finish."""
        node = self.nodes.get(name)
        if node is not None:
            node.draining = True
            self._queue_changed = True

    def node_expired(self, name: str, now: float) -> None:
        """A node has been silent longer than its executor's lease: it has killed its attempts itself (or
        is gone with them), so each is closed as crashed and retried by the usual rules, and the node
        leaves the ledger until it says Hello again."""
        for job in [j for j in self.running.values() if j.node == name]:
            self.attempt_finished(job.job_id, job.attempt, Outcome.CRASHED, f"node {name} lost", None, now)
        self.nodes.pop(name, None)
        self._queue_changed = True

    def attempt_finished(
        self, job_id: str, attempt: int, outcome: Outcome, error: str | None, result: Any, now: float
    ) -> bool:
        """Fenced: only the job's current running attempt may end it. Returns whether it was accepted."""
        job = self.running.get(job_id)
        if job is None or job.attempt != attempt:
            return False
        del self.running[job_id]
        self._release(job)
        self.controls.ended(job.type)
        self._queue_changed = True
        ran_for = max(0.0, now - job.started_at) if job.started_at is not None else 0.0
        job.started_at = None
        if job.cancel_requested and outcome is not Outcome.SUCCEEDED:
            outcome = Outcome.CANCELLED
        elif job.interrupt_requested and outcome is not Outcome.SUCCEEDED:
            outcome = Outcome.INTERRUPTED
        job.interrupt_requested = False
        self._effects.closes.append(CloseAttempt(job_id, attempt, now, outcome, error, ran_for, job.type, job.level))
        if outcome is Outcome.SUCCEEDED:
            self._succeed(job, result, now)
        elif outcome is Outcome.CANCELLED:
            self._finish(job, Status.CANCELLED, now, "cancelled", error="cancelled while running")
        elif outcome is Outcome.INTERRUPTED:
            # A drain stopped it: back in line without using up an attempt.
            job.charged -= 1
            self._make_pending(job, now, now, event="interrupted", charged=job.charged)
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
                self._effects.kills.append(Kill(job_id, job.attempt, Outcome.CANCELLED, job.node))
            return "cancel_requested"
        self._finish(job, Status.CANCELLED, now, "cancelled", error="cancelled before it ran")
        return "cancelled"

    def forget_finished(self, job_ids: Iterable[str]) -> None:
        """Finished jobs that retention deleted: their ids may be submitted again as new jobs."""
        for job_id in job_ids:
            self.recently_finished.pop(job_id, None)

    def redrive(self, job_id: str, items: list[Restored], dep_status: Mapping[str, str], now: float) -> bool:
        """Re-drive a failed job from the dead letter queue with fresh attempts; its upstream_failed
        descendants (`items`, the job itself included) go back to blocked behind it."""
        if job_id in self.jobs:
            return False
        by_id = {item.job.job_id: item for item in items}
        root = by_id.get(job_id)
        if root is None or root.job.status is not Status.FAILED:
            return False
        job = Job(
            job_id=job_id,
            type=root.job.type,
            seq=root.job.seq,
            level=root.job.priority,
            need=Resources(root.job.cpu_units, root.job.memory_mb),
            timeout_seconds=root.job.timeout_seconds,
            retry=root.job.retry,
            status=Status.FAILED,
            attempt=root.attempt,
            charged=0,
        )
        self.jobs[job_id] = job
        self._count(job, job.status, +1)
        self.recently_finished.pop(job_id, None)
        self._make_pending(job, now, now, charged=0, data={"redriven": True})
        for item in _parents_first([i for i in items if i.job.job_id != job_id]):
            child_id = item.job.job_id
            self.recently_finished.pop(child_id, None)
            mark = len(self._effects.transitions)
            self.admit(msgspec.structs.replace(item.job, status=Status.BLOCKED), dep_status, now)
            child = self.jobs.get(child_id)
            if child is not None and not any(t.job_id == child_id for t in self._effects.transitions[mark:]):
                self._transition(child, child.status, now, "blocked")
        return True

    def drain(self) -> None:
        """Start nothing new from now on (graceful shutdown); running attempts may finish."""
        self.draining = True

    def interrupt_running(self) -> None:
        """The drain's grace is over: stop every running attempt. Each goes back to pending unused."""
        for job in self.running.values():
            if not job.interrupt_requested and not job.cancel_requested:
                job.interrupt_requested = True
                self._effects.kills.append(Kill(job.job_id, job.attempt, Outcome.INTERRUPTED, job.node))

    def tick(self, now: float) -> None:
        """Promote scheduled jobs that are due, then start what fits."""
        while (due := self.next_wakeup()) is not None and due <= now:
            _, _, job_id = heapq.heappop(self._timers)
            self._make_pending(self.jobs[job_id], now, now)
        self._dispatch(now)

    # ---------------------------------------------------------------------------------------- internals

    def _dispatch(self, now: float) -> None:
        """EASY backfill over the nodes. Start jobs in queue order while each fits on some node (the one
        with the most free CPU units, so that work spreads). The first that fits nowhere now (the head)
        gets a reservation: the earliest time, on any node that can hold it, when enough is sure to be
        free there, counting each running attempt as ending at its deadline (timeout plus kill grace). A
        later job may start now on any other node, or on the reserved node only if it cannot delay the
        reservation: it ends before the reservation time, or it fits in what the head will leave over
        there. Only the first `BACKFILL_DEPTH` waiting jobs are examined, so a turn costs
        O(depth × nodes) however long the queue is.
        """
        nodes = [n for n in self.nodes.values() if n.takes_work]
        if not nodes or self.draining:
            self.reservation = None
            return
        if not self._queue_changed and not self.controls.due(now):
            return  # nothing became pending, left the queue or freed resources: the last pass still holds
        self._queue_changed = False
        self.reservation = None
        free = {n.name: n.free for n in nodes}
        held: list[Job] = []  # held back by their type's control: out of the queue for this loop only
        try:
            while (head_id := self.queue.head()) is not None:  # in order, while the head fits somewhere
                head = self.jobs[head_id]
                if self.controls.admits(head.type, now) is not None:
                    if len(held) >= HELD_SCAN_LIMIT:
                        return
                    assert head.ready_at is not None
                    self.queue.remove(head.ready_at, head.level, head.seq)  # passed over, never the head
                    held.append(head)
                    continue
                place = _roomiest(head.need, free)
                if place is None:
                    break
                self.controls.started(head.type, now)
                self._start(head, place, now, backfilled=False)
                free[place] = free[place] - head.need
            else:
                return
        finally:
            for job in held:  # back in their places: their keys did not change
                assert job.ready_at is not None
                self.queue.add(job.ready_at, job.level, job.seq, job.job_id)
        self.reservation = reservation = self._reserve(head, free, now)
        if not any(
            (f.cpu_units > 0 or self._zero_cpu_pending) and (f.memory_mb > 0 or self._zero_mem_pending)
            for f in free.values()
        ):
            return  # nothing waiting could fit in what is free: no scan
        extra = reservation.extra
        chosen: list[tuple[Job, str]] = []
        for job_id in itertools.islice(self.queue, 1, BACKFILL_DEPTH):
            job = self.jobs[job_id]
            if self.controls.admits(job.type, now) is not None:
                continue
            elsewhere = {name: f for name, f in free.items() if name != reservation.node}
            place = _roomiest(job.need, elsewhere)
            if place is None:
                reserved = reservation.node
                if reserved is None or not job.need.fits_in(free[reserved]):
                    continue
                if reservation.at != math.inf and self._end_bound(job.timeout_seconds, now) < reservation.at:
                    pass  # done before the head's reserved start: cannot delay it
                elif job.need.fits_in(extra):
                    extra = extra - job.need  # runs past it, but in what the head leaves over
                else:
                    continue
                place = reserved
            chosen.append((job, place))
            self.controls.started(job.type, now)
            free[place] = free[place] - job.need
        for job, place in chosen:
            self._start(job, place, now, backfilled=True)

    def _reserve(self, head: Job, free: dict[str, Resources], now: float) -> Reservation:
        """The earliest (time, node) at which the head is sure to fit, over every node that can hold it."""
        best = Reservation(head.job_id, math.inf, ZERO)
        for name, available in free.items():
            if not head.need.fits_in(self.nodes[name].capacity):
                continue
            ends = sorted(
                (
                    (self._end_bound(j.timeout_seconds, j.started_at if j.started_at is not None else now), j.need)
                    for j in self.running.values()
                    if j.node == name
                ),
                key=lambda end_need: end_need[0],
            )
            for end, need in ends:
                available = available + need
                if head.need.fits_in(available):
                    if best.node is None or end < best.at:
                        # At an unknown time nothing can be promised to be left over.
                        left = available - head.need if end != math.inf else ZERO
                        best = Reservation(head.job_id, end, left, name)
                    break
            else:
                if best.node is None:  # its running attempts are counted but gone: at no known time
                    best = Reservation(head.job_id, math.inf, ZERO, name)
        return best

    def _end_bound(self, timeout: float | None, start: float) -> float:
        # An attempt ends by its deadline plus the kill grace. Without a timeout its end is unknown:
        # then nothing may be backfilled past it, which `math.inf` expresses.
        return math.inf if timeout is None else start + timeout + self.kill_grace

    def _start(self, job: Job, place: str, now: float, *, backfilled: bool) -> None:
        ready_at = job.ready_at
        assert ready_at is not None
        self.queue.remove(ready_at, job.level, job.seq)
        self._count_zero_need(job, -1)
        job.ready_at = None
        job.attempt += 1
        job.charged += 1
        self._set_status(job, Status.RUNNING)
        job.started_at = now
        job.node = place
        job.dispatched_to = self.nodes[place].instance
        self.running[job.job_id] = job
        self._hold(job)
        self._effects.starts.append(
            Start(
                job.job_id,
                job.attempt,
                now,
                job.timeout_seconds,
                job.need.memory_mb,
                charged=job.charged,
                backfilled=backfilled,
                waited=max(0.0, now - ready_at),
                job_type=job.type,
                level=job.level,
                dispatched_to=job.dispatched_to,
                node=place,
            )
        )

    def _node(self, name: str) -> Node:
        node = self.nodes.get(name)
        if node is None:
            # A node first seen through the attempts it runs (a rebuild) offers nothing new until its
            # supervisor says what it has.
            node = self.nodes[name] = Node(name, ZERO)
        return node

    def _hold(self, job: Job) -> None:
        node = self._node(job.node)
        node.used = node.used + job.need
        node.running += 1

    def _release(self, job: Job) -> None:
        node = self.nodes.get(job.node)
        if node is not None:
            node.used = node.used - job.need
            node.running -= 1

    def _set(self, job: Job, status: Status, now: float, event: str, **extra: Any) -> None:
        if job.status is status and event in ("blocked", "scheduled") and not extra:
            return  # already committed in this state: nothing to write
        self._set_status(job, status)
        self._transition(job, status, now, event, **extra)

    def _make_pending(self, job: Job, ready_at: float, now: float, event: str = "ready", **extra: Any) -> None:
        was_committed_pending = job.status is Status.PENDING and job.ready_at is None and event == "ready" and not extra
        job.due_at = None
        job.ready_at = ready_at
        self.queue.add(ready_at, job.level, job.seq, job.job_id)
        self._count_zero_need(job, +1)
        self._queue_changed = True
        heapq.heappush(self._pending_since, (ready_at, job.seq, job.job_id))
        if len(self._pending_since) > 2 * len(self.queue) + COMPACT_SLACK:
            self._pending_since = self._live_entries(self._pending_since, lambda j: j.ready_at is not None)
        if was_committed_pending:
            return
        self._set_status(job, Status.PENDING)
        self._transition(job, Status.PENDING, now, event, **extra)

    def _schedule(self, job: Job, due: float, now: float, event: str, **extra: Any) -> None:
        job.due_at = due
        heapq.heappush(self._timers, (due, job.seq, job.job_id))
        if len(self._timers) > 2 * self.depth_of(Status.SCHEDULED) + COMPACT_SLACK:
            self._timers = self._live_entries(self._timers, lambda j: j.due_at is not None)
        if job.status is Status.SCHEDULED and event == "scheduled":
            return
        self._set_status(job, Status.SCHEDULED)
        self._transition(job, Status.SCHEDULED, now, event, next_run_at=due, **extra)

    def _live_entries(
        self, heap: list[tuple[float, int, str]], alive: Callable[[Job], bool]
    ) -> list[tuple[float, int, str]]:
        """The lazily cleaned heaps drop their stale entries once those outnumber the live ones: amortised
        O(1) per push, and memory stays proportional to the live jobs."""
        kept = [
            entry
            for entry in heap
            if (job := self.jobs.get(entry[2])) is not None and alive(job) and _entry_is_current(job, entry)
        ]
        heapq.heapify(kept)
        return kept

    def depth_of(self, status: Status) -> int:
        return self._status_depth[status]

    def _count(self, job: Job, status: Status, delta: int) -> None:
        self.depth[(status, job.level)] += delta
        self._status_depth[status] += delta

    def _set_status(self, job: Job, status: Status) -> None:
        self._count(job, job.status, -1)
        self._count(job, status, +1)
        job.status = status

    def _transition(self, job: Job, status: Status, now: float, event: str, **extra: Any) -> None:
        extra.setdefault("attempt", job.attempt or None)
        self._effects.transitions.append(
            Transition(job.job_id, status, now, event, job_type=job.type, level=job.level, **extra)
        )

    def _leave_waiting(self, job: Job) -> None:
        if job.ready_at is not None:
            self.queue.remove(job.ready_at, job.level, job.seq)
            self._count_zero_need(job, -1)
            job.ready_at = None
            self._queue_changed = True

    def _count_zero_need(self, job: Job, delta: int) -> None:
        """Pending jobs that need no cpu (or no memory) can fit even when that resource is exhausted."""
        if job.need.cpu_units == 0:
            self._zero_cpu_pending += delta
        if job.need.memory_mb == 0:
            self._zero_mem_pending += delta
        job.due_at = None  # its timer entry turns stale

    def _succeed(self, job: Job, result: Any, now: float) -> None:
        self._finish(job, Status.SUCCEEDED, now, "succeeded", result=result)
        for child_id in job.children or ():
            child = self.jobs.get(child_id)
            if child is None or child.status is not Status.BLOCKED or child.waiting_on is None:
                continue
            child.waiting_on.discard(job.job_id)
            if not child.waiting_on:
                if child.run_at is not None and child.run_at > now:
                    self._schedule(child, child.run_at, now, "scheduled")
                else:
                    self._make_pending(child, now, now)

    def _finish(self, job: Job, status: Status, now: float, event: str, **extra: Any) -> None:
        """Make a job terminal; a failure fails every descendant too (iteratively: chains can be long)."""
        self._end(job, status, now, event, **extra)
        if status is Status.SUCCEEDED:
            return
        stack = [(job, status)]
        while stack:
            parent, parent_status = stack.pop()
            for child_id in parent.children or ():
                child = self.jobs.get(child_id)
                if child is not None:
                    error = f"dependency {parent.job_id} {parent_status.value}"
                    self._end(child, Status.UPSTREAM_FAILED, now, "upstream_failed", error=error)
                    stack.append((child, Status.UPSTREAM_FAILED))

    def _end(self, job: Job, status: Status, now: float, event: str, **extra: Any) -> None:
        self._leave_waiting(job)
        self._count(job, job.status, -1)
        job.status = status
        del self.jobs[job.job_id]
        # Remembered for a while: a child submitted as its parent finishes must see how it ended,
        # even when the database write of that end is still in this turn's batch.
        self.recently_finished[job.job_id] = status
        if len(self.recently_finished) > RECENT_TERMINAL:
            self.recently_finished.popitem(last=False)
        self._transition(job, status, now, event, **extra)


def _roomiest(need: Resources, free: dict[str, Resources]) -> str | None:
    """The node where `need` fits with the most CPU units (then memory) left free: work spreads out."""
    best: str | None = None
    best_key: tuple[int, int] = (0, 0)
    for name, f in free.items():
        if need.fits_in(f):
            key = (f.cpu_units, f.memory_mb)
            if best is None or key > best_key:
                best, best_key = name, key
    return best


def _entry_is_current(job: Job, entry: tuple[float, int, str]) -> bool:
    """A heap entry still describes the job: its due time, or its ready time while pending."""
    if job.due_at is not None and job.status is Status.SCHEDULED:
        return entry[0] == job.due_at
    return job.ready_at is not None and entry[0] == job.ready_at


def _parents_first(items: list[Restored]) -> list[Restored]:
    by_id = {item.job.job_id: item for item in items}
    edges = {job_id: item.job.depends_on for job_id, item in by_id.items()}
    return [by_id[job_id] for job_id in parents_first(list(by_id), edges)]
