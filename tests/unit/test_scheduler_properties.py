"""Property-based tests of the scheduler core, driven by generated workloads on a fake clock.

A workload is a random DAG of jobs (edges only to earlier jobs), with random priorities, resource needs within
capacity, arrival times, run_at times, retry policies, scripted attempt outcomes and durations, cancellations and
supervisor reconnects. `Simulation` plays it against a `SchedulerCore` one event at a time, and after every call
`Model` checks the effects against an independent account of what must hold (capacity, dependencies, strict
queue order with aging, fencing, retries, positions) and that the core's visible state agrees with it.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.model import TERMINAL, WAITING, Outcome, Resources, RetryPolicy, Status
from service.protocol import NewJob
from service.scheduler.core import Effects, SchedulerCore

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_STEPS = 20_000
T0 = 1000.0  # the fake clock starts here
ZERO = Resources(0, 0)
# Written out here rather than taken from `Outcome.retryable`, so that the model does not share a mistake with it.
RETRIED = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.CRASHED, Outcome.MEMORY_EXCEEDED})


# ---------------------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    seq: int
    priority: int
    need: Resources
    deps: tuple[str, ...]
    arrival: float
    created_at: float  # committed a little before the scheduler hears of it
    run_at: float | None
    timeout: float | None
    retry: RetryPolicy
    outcomes: tuple[Outcome, ...]  # the outcome of attempt n is outcomes[n - 1]; later attempts succeed
    durations: tuple[float, ...]
    cancel_at: float | None
    stale_blocked: bool  # committed as blocked although its dependencies are already done

    def outcome(self, attempt: int) -> Outcome:
        return self.outcomes[attempt - 1] if attempt <= len(self.outcomes) else Outcome.SUCCEEDED

    def duration(self, attempt: int) -> float:
        return self.durations[(attempt - 1) % len(self.durations)]


@dataclass(frozen=True)
class Workload:
    capacity: Resources
    aging: float
    seed: int
    first_ready: float
    kill_grace: float
    kill_delay: float  # how long a killed attempt takes to report
    redeliver: float | None  # the supervisor reports every finished attempt once more after this long
    bounces: tuple[tuple[float, float, int], ...]  # (supervisor lost at, down for, which survive)
    jobs: tuple[JobSpec, ...]


OUTCOMES = st.sampled_from(
    [Outcome.SUCCEEDED] * 6
    + [
        Outcome.FAILED,
        Outcome.FAILED,
        Outcome.PERMANENT_FAILURE,
        Outcome.TIMED_OUT,
        Outcome.CRASHED,
        Outcome.MEMORY_EXCEEDED,
        Outcome.INTERRUPTED,
        Outcome.CANCELLED,
    ]
)
RETRIES = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 3),
    backoff_multiplier=st.sampled_from([1.0, 2.0, 3.0]),
    initial_delay_seconds=st.sampled_from([0.0, 0.5, 2.0]),
    max_delay_seconds=st.sampled_from([1.0, 5.0]),
    jitter=st.sampled_from([0.0, 0.1, 0.5]),
)


@st.composite
def workloads(
    draw: st.DrawFn, max_jobs: int = 12, failures: bool = True, serial: bool = False, bounded: bool = False
) -> Workload:
    """`serial`: every job needs the whole node, so at most one runs at a time. `bounded`: every job has a
    timeout, so reservations are at finite times and backfill decisions are made on them."""
    capacity = Resources(draw(st.integers(1, 8)), draw(st.sampled_from([64, 256, 1000])))
    count = draw(st.integers(4 if bounded else 1, max_jobs))
    jobs: list[JobSpec] = []
    now = T0
    memories = sorted({1, capacity.memory_mb // 4, capacity.memory_mb // 2})
    for i in range(count):
        now += draw(st.sampled_from([0.0, 0.0, 0.0, 0.5] if bounded else [0.0, 0.0, 0.5, 1.0, 3.0, 10.0]))
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        if serial or not draw(st.integers(0, 9)):
            need = capacity
        else:
            need = Resources(draw(st.integers(1, capacity.cpu_units)), draw(st.sampled_from(memories)))
        if bounded:
            # Backfill needs big long jobs that block the line and small short ones that can slip past them.
            if draw(st.booleans()):
                need, timeout = Resources(1, memories[0]), 0.75
            else:
                big = Resources(draw(st.integers((capacity.cpu_units + 1) // 2, capacity.cpu_units)), need.memory_mb)
                need, timeout = big, draw(st.sampled_from([6.0, 30.0]))
        else:
            timeout = draw(st.sampled_from([None, 0.75, 2.0, 6.0, 30.0]))
        # Without failures, no attempt runs past its timeout (it would be killed and so time out).
        lengths = [d for d in (0.0, 0.5, 1.0, 5.0) if failures or timeout is None or d <= timeout]
        jobs.append(
            JobSpec(
                job_id=f"j{i}",
                seq=i + 1,
                priority=draw(st.integers(0, 3)),
                need=need,
                deps=tuple(f"j{d}" for d in deps),
                arrival=now,
                created_at=now - draw(st.sampled_from([0.0, 0.0, 0.5, 2.0])),
                run_at=draw(st.none() | st.sampled_from([now - 1.0, now, now + 0.5, now + 2.0, now + 20.0])),
                timeout=timeout,
                retry=draw(RETRIES),
                outcomes=tuple(draw(st.lists(OUTCOMES, max_size=4))) if failures else (),
                durations=tuple(draw(st.lists(st.sampled_from(lengths), min_size=1, max_size=3))),
                cancel_at=draw(st.sampled_from([None] * 12 + [now, now + 1.0, now + 4.0])) if failures else None,
                stale_blocked=bool(deps) and draw(st.booleans()),
            )
        )
    bounces = tuple(
        draw(
            st.lists(
                st.tuples(
                    st.sampled_from([T0 + 1.0, T0 + 2.5, T0 + 6.0, T0 + 15.0]),
                    st.sampled_from([0.0, 1.0]),
                    st.integers(0, 2**16),
                ),
                max_size=2 if failures else 0,
            )
        )
    )
    return Workload(
        capacity=capacity,
        aging=draw(st.sampled_from([1.0, 4.0, 60.0])),
        seed=draw(st.integers(0, 2**32 - 1)),
        first_ready=T0 + draw(st.sampled_from([0.0, 0.0, 2.0])),
        kill_grace=draw(st.sampled_from([0.0, 0.5, 2.0])),
        kill_delay=draw(st.sampled_from([0.25, 5.0])),
        redeliver=draw(st.sampled_from([None, 0.5, 3.0])) if failures else None,
        bounces=bounces,
        jobs=tuple(jobs),
    )


# ---------------------------------------------------------------------------------------------- the model


@dataclass
class ModelJob:
    spec: JobSpec
    status: Status | None = None  # None: not submitted yet
    ready_at: float | None = None  # while pending
    due: float | None = None  # while scheduled
    attempt: int = 0
    charged: int = 0
    running: int | None = None  # the attempt running now
    cancel_requested: bool = False
    closes: list[Outcome] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)


def total(needs: Any) -> Resources:
    out = ZERO
    for need in needs:
        out = out + need
    return out


class Model:
    """What the scheduler must do, tracked independently from its effects, and checked after every call."""

    def __init__(self, core: SchedulerCore, specs: tuple[JobSpec, ...], aging: float, kill_grace: float) -> None:
        self.core = core
        self.kill_grace = kill_grace
        self.jobs = {spec.job_id: ModelJob(spec) for spec in specs}
        self.aging = aging
        self.supervisor_ready = False
        self.previous_order: list[str] = []
        self.expect_cancelled: set[str] = set()
        self.expect_kills: list[tuple[str, int]] = []

    # ------------------------------------------------------------------------------------ derived views

    def key(self, job: ModelJob) -> tuple[float, int]:
        assert job.ready_at is not None
        return (job.ready_at - job.spec.priority * self.aging, job.spec.seq)

    def pending(self) -> list[str]:
        jobs = [j for j in self.jobs.values() if j.status is Status.PENDING]
        return [j.spec.job_id for j in sorted(jobs, key=self.key)]

    def running_need(self) -> Resources:
        return total(j.spec.need for j in self.jobs.values() if j.status is Status.RUNNING)

    def live(self) -> dict[str, Status]:
        return {i: j.status for i, j in self.jobs.items() if j.status is not None and not j.status.terminal}

    # ------------------------------------------------------------------------------------ driving events

    def submit(self, spec: JobSpec, now: float) -> tuple[NewJob, dict[str, str]]:
        deps = [self.jobs[d] for d in spec.deps]
        assert all(d.status is not None for d in deps)
        if spec.deps and (spec.stale_blocked or any(d.status in WAITING or d.status is Status.RUNNING for d in deps)):
            status = Status.BLOCKED
        elif spec.run_at is not None and spec.run_at > now:
            status = Status.SCHEDULED
        else:
            status = Status.PENDING
        job = self.jobs[spec.job_id]
        job.status = status
        job.ready_at = spec.created_at if status is Status.PENDING else None
        job.due = spec.run_at if status is Status.SCHEDULED else None
        dep_status = {d.spec.job_id: str(d.status) for d in deps if d.status in TERMINAL}
        new = NewJob(
            job_id=spec.job_id,
            type="noop",
            seq=spec.seq,
            priority=spec.priority,
            cpu_units=spec.need.cpu_units,
            memory_mb=spec.need.memory_mb,
            depends_on=list(spec.deps),
            status=status,
            created_at=spec.created_at,
            run_at=spec.run_at,
            timeout_seconds=spec.timeout,
            retry=spec.retry,
        )
        return new, dep_status

    def finish_accepted(self, job_id: str, attempt: int) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and job.status is Status.RUNNING and job.running == attempt

    def cancel_verdict(self, job_id: str) -> str:
        job = self.jobs[job_id]
        if job.status is None or job.status.terminal:
            return "not_waiting"
        if job.status is Status.RUNNING:
            if not job.cancel_requested:
                job.cancel_requested = True
                assert job.running is not None
                self.expect_kills.append((job_id, job.running))
            return "cancel_requested"
        self.expect_cancelled.add(job_id)
        return "cancelled"

    # ------------------------------------------------------------------------------------ checking effects

    def apply(self, effects: Effects, now: float, reported: dict[tuple[str, int], Outcome], ticked: bool) -> None:
        self._closes(effects, now, reported)
        closed = {c.job_id: c.outcome for c in effects.closes}
        for transition in effects.transitions:
            self._transition(transition, now, closed)
        assert not closed, f"closed attempts without a status change: {closed}"
        assert not self.expect_cancelled, f"cancel verdict 'cancelled' without a transition: {self.expect_cancelled}"
        assert [(k.job_id, k.attempt, k.outcome) for k in effects.kills] == [
            (j, a, Outcome.CANCELLED) for j, a in self.expect_kills
        ]
        self.expect_kills.clear()
        self._starts(effects, now, ticked)
        self.check_state(now, ticked)

    def _closes(self, effects: Effects, now: float, reported: dict[tuple[str, int], Outcome]) -> None:
        assert sorted((c.job_id, c.attempt) for c in effects.closes) == sorted(reported)
        for close in effects.closes:
            job = self.jobs[close.job_id]
            assert close.at == now
            assert job.status is Status.RUNNING
            assert job.running == close.attempt
            outcome = reported[(close.job_id, close.attempt)]
            if job.cancel_requested and outcome is not Outcome.SUCCEEDED:
                outcome = Outcome.CANCELLED
            assert close.outcome is outcome

    def _transition(self, t: Any, now: float, closed: dict[str, Outcome]) -> None:
        job = self.jobs[t.job_id]
        spec, before = job.spec, job.status
        assert t.at == now
        assert before is not None, f"transition of {t.job_id} before it was submitted"
        assert not before.terminal, f"{t.job_id} left terminal status {before} for {t.status}"
        if before is Status.RUNNING:
            assert t.job_id in closed, f"{t.job_id} left running without a closed attempt"
            outcome = closed.pop(t.job_id)
            job.closes.append(outcome)
            job.running = None
            if outcome is not Outcome.INTERRUPTED:
                job.charged += 1
            assert job.charged <= spec.retry.max_attempts
            if outcome is Outcome.SUCCEEDED:
                assert (t.status, t.event) == (Status.SUCCEEDED, "succeeded")
            elif outcome is Outcome.CANCELLED:
                assert (t.status, t.event) == (Status.CANCELLED, "cancelled")
            elif outcome is Outcome.INTERRUPTED:
                assert (t.status, t.event) == (Status.PENDING, "interrupted")
            elif outcome in RETRIED and job.charged < spec.retry.max_attempts:
                assert (t.status, t.event) == (Status.SCHEDULED, "retry_scheduled")
                self._check_retry_delay(job, t, now)
            else:
                event = "failed" if outcome in (Outcome.FAILED, Outcome.PERMANENT_FAILURE) else outcome.value
                assert (t.status, t.event) == (Status.FAILED, event)
        elif t.status is Status.UPSTREAM_FAILED:
            assert before in WAITING
            assert t.event == "upstream_failed"
            failed = [f"dependency {d} {self.jobs[d].status}" for d in spec.deps]
            assert t.error in failed, (t.error, failed)
            assert self.jobs[t.error.split()[1]].status in TERMINAL - {Status.SUCCEEDED}
        elif t.status is Status.CANCELLED:
            assert before in WAITING
            assert t.job_id in self.expect_cancelled
            self.expect_cancelled.discard(t.job_id)
        elif t.status is Status.PENDING:
            assert t.event == "ready"
            assert before in (Status.BLOCKED, Status.SCHEDULED)
            assert all(self.jobs[d].status is Status.SUCCEEDED for d in spec.deps), f"{t.job_id} ready too early"
            if before is Status.SCHEDULED:
                assert job.due is not None
                assert now >= job.due, f"{t.job_id} promoted before {job.due}"
        elif t.status is Status.BLOCKED:
            assert (before, t.event) == (Status.PENDING, "blocked")
        elif t.status is Status.SCHEDULED:
            assert before in (Status.BLOCKED, Status.PENDING)
            assert t.event == "scheduled"
            assert t.next_run_at == spec.run_at
            assert spec.run_at is not None
            assert spec.run_at > now
        else:
            raise AssertionError(f"unexpected transition {t}")
        job.status = t.status
        job.ready_at = now if t.status is Status.PENDING else None
        job.due = t.next_run_at if t.status is Status.SCHEDULED else None

    def _check_retry_delay(self, job: ModelJob, t: Any, now: float) -> None:
        policy = job.spec.retry
        base = min(
            policy.initial_delay_seconds * policy.backoff_multiplier ** (job.charged - 1), policy.max_delay_seconds
        )
        delay = t.next_run_at - now
        assert base - 1e-9 <= delay <= base * (1 + policy.jitter) + 1e-9, (base, delay)
        assert t.data is not None
        assert abs(t.data["delay_seconds"] - delay) <= 0.0005 + 1e-9
        assert t.data["attempt"] == job.attempt

    def bound(self, job: ModelJob, start: float) -> float:
        """When an attempt started at `start` is sure to have ended: its timeout plus the kill grace."""
        timeout = job.spec.timeout
        return math.inf if timeout is None else start + timeout + self.kill_grace

    @staticmethod
    def earliest(
        need: Resources, free: Resources, running: list[tuple[float, Resources]]
    ) -> tuple[float, Resources, bool]:
        """The earliest time `need` is sure to fit, what is left over beside it then, and whether several
        running attempts end at exactly that time."""
        available = free
        for end in sorted({end for end, _ in running}):
            ending = [n for e, n in running if e == end]
            available = available + total(ending)
            if need.fits_in(available):
                return end, (available - need if end != math.inf else ZERO), len(ending) > 1
        raise AssertionError(f"{need} never fits")

    def _starts(self, effects: Effects, now: float, ticked: bool) -> None:
        """Starts go in queue order: the line starts while it fits; past the first job that does not (the
        head), a job starts only as backfill, which must not delay the head's guaranteed start (EASY): it is
        sure to end before a finite reservation, or fits in what the head leaves over then. A job held back
        although it fits must be one that could delay the head."""
        ids = [s.job_id for s in effects.starts]
        if not (ticked and self.supervisor_ready):
            assert ids == [], "dispatch outside tick or before the supervisor is ready"
            return
        order = self.pending()
        assert set(ids) <= set(order)
        assert len(set(ids)) == len(ids)
        ranks = [order.index(i) for i in ids]
        assert ranks == sorted(ranks), "starts out of queue order"
        backfilled = {s.job_id: s.backfilled for s in effects.starts}
        running = [(self.bound(j, j.starts[-1]), j.spec.need) for j in self.jobs.values() if j.running is not None]
        free = self.core.capacity - self.running_need()
        head: Resources | None = None
        reserved_at, extra, tie = math.inf, ZERO, False
        for job_id in order:
            need = self.jobs[job_id].spec.need
            end = self.bound(self.jobs[job_id], now)
            # Done before a (known) reserved start, so it cannot delay it.
            harmless = reserved_at != math.inf and end < reserved_at
            if head is None and need.fits_in(free):
                assert job_id in backfilled, f"{job_id} fits in {free} in line order but did not start"
                assert not backfilled[job_id]
            elif head is None:
                assert job_id not in backfilled, f"{job_id} does not fit in {free} but started"
                head = need
                reserved_at, extra, tie = self.earliest(need, free, running)
                continue
            elif job_id in backfilled:
                assert backfilled[job_id]
                assert need.fits_in(free)
                if not harmless:
                    assert need.fits_in(extra), f"backfilled {job_id} outlasts the reservation and does not fit beside"
                    extra = extra - need
            else:
                if need.fits_in(free):  # it fits now, so it was held back for the head: it must be able to delay it
                    assert not harmless, f"{job_id} ends before the head's reservation but did not start"
                    if not tie:
                        assert not need.fits_in(extra), f"{job_id} fits beside the head's reservation but did not start"
                continue
            free = free - need
            running.append((end, need))
        if head is not None:
            # Backfilling never pushes back the head's guaranteed start.
            assert self.earliest(head, free, running)[0] == reserved_at
        for start in effects.starts:
            job = self.jobs[start.job_id]
            spec = job.spec
            assert all(self.jobs[d].status is Status.SUCCEEDED for d in spec.deps), f"{spec.job_id} started early"
            assert (start.attempt, start.at) == (job.attempt + 1, now)
            assert (start.timeout_seconds, start.memory_mb) == (spec.timeout, spec.need.memory_mb)
            if spec.run_at is not None:
                assert now >= spec.run_at, f"{spec.job_id} started before its run_at"
            job.attempt += 1
            job.running = job.attempt
            job.status = Status.RUNNING
            job.ready_at = None
            job.starts.append(now)
        assert free == self.core.capacity - self.running_need()

    # ------------------------------------------------------------------------------------ state agreement

    def check_state(self, now: float, ticked: bool) -> None:
        core = self.core
        live = self.live()
        assert {j: job.status for j, job in core.jobs.items()} == live
        running = {j for j, s in live.items() if s is Status.RUNNING}
        assert set(core.running) == running
        assert core.used == self.running_need() == total(job.need for job in core.running.values())
        assert core.used.fits_in(core.capacity)
        assert core.used.cpu_units >= 0
        assert core.used.memory_mb >= 0
        for job_id in running:
            assert core.attempt_started(job_id, self.jobs[job_id].attempt)
        order = self.pending()
        assert list(core.queue) == order
        positions = {j: i for i, j in enumerate(order)}
        for job_id in self.jobs:
            assert core.position(job_id) == positions.get(job_id), job_id
        # Keys never change while a job waits: two jobs that stayed pending keep their relative order.
        still = set(order) & set(self.previous_order)
        assert [j for j in self.previous_order if j in still] == [j for j in order if j in still]
        self.previous_order = order
        if ticked:
            wakeup = core.next_wakeup()
            assert wakeup is None or wakeup > now
            due = [j.due for j in self.jobs.values() if j.status is Status.SCHEDULED and j.due is not None]
            assert wakeup == (min(due) if due else None)


# ---------------------------------------------------------------------------------------------- the driver


class Simulation:
    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.core = SchedulerCore(
            workload.capacity, workload.aging, random.Random(workload.seed), kill_grace=workload.kill_grace
        )
        self.model = Model(self.core, workload.jobs, workload.aging, workload.kill_grace)
        self.specs = {spec.job_id: spec for spec in workload.jobs}
        self.events: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self.counter = 0
        self.stale_rejected = 0
        for spec in workload.jobs:
            self.push(spec.arrival, "arrive", spec.job_id)
        for spec in workload.jobs:
            if spec.cancel_at is not None:
                self.push(spec.cancel_at, "cancel", spec.job_id)
        self.push(workload.first_ready, "ready", None)
        for lost_at, down_for, survivors in workload.bounces:
            self.push(lost_at, "lost")
            self.push(lost_at + down_for, "ready", survivors)

    def push(self, at: float, kind: str, *args: Any) -> None:
        heapq.heappush(self.events, (at, self.counter, kind, args))
        self.counter += 1

    def step(self, now: float, kind: str, args: tuple[Any, ...]) -> None:
        core, model = self.core, self.model
        reported: dict[tuple[str, int], Outcome] = {}
        if kind == "arrive":
            new, dep_status = model.submit(self.specs[args[0]], now)
            core.admit(new, dep_status, now)
        elif kind == "cancel":
            expected = model.cancel_verdict(args[0])
            assert core.cancel(args[0], now) == expected
        elif kind == "finish":
            job_id, attempt, outcome = args[:3]
            accepted = model.finish_accepted(job_id, attempt)
            assert core.attempt_finished(job_id, attempt, outcome, f"{outcome} #{attempt}", None, now) is accepted
            if accepted:
                reported[(job_id, attempt)] = outcome
                if self.workload.redeliver is not None and len(args) == 3:
                    self.push(now + self.workload.redeliver, "finish", job_id, attempt, outcome, "again")
            else:
                self.stale_rejected += 1
        elif kind == "lost":
            core.supervisor_lost()
            model.supervisor_ready = False
        elif kind == "ready":
            running = sorted((j, job.running) for j, job in model.jobs.items() if job.running is not None)
            survivors = running
            if args[0] is not None:
                pick = random.Random(args[0])
                survivors = [r for r in running if pick.random() < 0.5]
            for job_id, attempt in running:
                if (job_id, attempt) not in survivors:
                    reported[(job_id, attempt)] = Outcome.CRASHED
            core.supervisor_ready_with(survivors, now)
            model.supervisor_ready = True
            # A cancelled attempt that survived is asked to stop again: the kill may never have arrived.
            model.expect_kills += [(j, a) for j, a in survivors if model.jobs[j].cancel_requested]
        else:
            raise AssertionError(kind)
        effects = core.take_effects()
        model.apply(effects, now, reported, ticked=False)
        self.react(effects, now)

    def tick(self, now: float) -> None:
        self.core.tick(now)
        effects = self.core.take_effects()
        self.model.apply(effects, now, {}, ticked=True)
        self.react(effects, now)

    def react(self, effects: Effects, now: float) -> None:
        """The supervisor's side: run what was started, kill what was asked."""
        for start in effects.starts:
            spec = self.specs[start.job_id]
            duration, outcome = spec.duration(start.attempt), spec.outcome(start.attempt)
            if spec.timeout is not None and duration > spec.timeout:
                duration, outcome = spec.timeout, Outcome.TIMED_OUT  # killed at its deadline
            self.push(now + duration, "finish", start.job_id, start.attempt, outcome)
        for kill in effects.kills:
            self.push(now + self.workload.kill_delay, "finish", kill.job_id, kill.attempt, kill.outcome)

    def run(self) -> None:
        for _ in range(MAX_STEPS):
            wakeup = self.core.next_wakeup()
            times = [t for t in (wakeup, self.events[0][0] if self.events else None) if t is not None]
            if not times:
                return
            now = min(times)
            while self.events and self.events[0][0] <= now:
                _, _, kind, args = heapq.heappop(self.events)
                self.step(now, kind, args)
            self.tick(now)
        raise AssertionError("the workload did not settle")

    def check_settled(self) -> None:
        core, model = self.core, self.model
        assert core.jobs == {}
        assert core.running == {}
        assert core.used == ZERO
        assert len(core.queue) == 0
        assert core.next_wakeup() is None
        for job in model.jobs.values():
            spec = job.spec
            assert job.status is not None, spec.job_id
            assert job.status.terminal, (spec.job_id, job.status)
            assert job.charged <= spec.retry.max_attempts
            assert job.attempt == len(job.closes) == len(job.starts)
            if job.status is Status.SUCCEEDED:
                assert job.closes[-1] is Outcome.SUCCEEDED
                for dep in spec.deps:
                    assert model.jobs[dep].status is Status.SUCCEEDED
                    assert max(model.jobs[dep].starts) <= min(job.starts)
            elif job.status is Status.FAILED:
                last = job.closes[-1]
                assert last is Outcome.PERMANENT_FAILURE or (
                    last in RETRIED and job.charged == spec.retry.max_attempts
                ), (last, job.charged)
            elif job.status is Status.CANCELLED:
                assert spec.cancel_at is not None or job.closes[-1:] == [Outcome.CANCELLED]
            else:
                assert job.status is Status.UPSTREAM_FAILED
                assert job.starts == []
                assert any(model.jobs[d].status is not Status.SUCCEEDED for d in spec.deps)


# ---------------------------------------------------------------------------------------------- properties


def play(workload: Workload) -> Simulation:
    simulation = Simulation(workload)
    simulation.run()
    simulation.check_settled()
    return simulation


@PROPERTY_SETTINGS
@given(workloads())
def test_random_workloads_keep_every_invariant_and_settle(workload: Workload) -> None:
    """Capacity, dependencies, queue order with backfill, fencing, retries and positions hold after every event,
    and every job ends in a terminal status that its outcomes justify."""
    play(workload)


@PROPERTY_SETTINGS
@given(workloads(bounded=True))
def test_bounded_workloads_backfill_without_delaying_the_head(workload: Workload) -> None:
    """The same, with every job under a timeout: the head's reservation is a finite time, and what is backfilled
    either ends before it or fits in what the head leaves over."""
    play(workload)


@PROPERTY_SETTINGS
@given(workloads(serial=True))
def test_serial_workloads_keep_every_invariant_and_settle(workload: Workload) -> None:
    """The same, with every job needing the whole node: at most one runs, so the line is strictly in order."""
    play(workload)


@PROPERTY_SETTINGS
@given(workloads(failures=False))
def test_without_failures_every_job_succeeds_exactly_once(workload: Workload) -> None:
    simulation = play(workload)
    for job in simulation.model.jobs.values():
        assert job.status is Status.SUCCEEDED
        assert job.attempt == 1
    assert simulation.stale_rejected == 0


@PROPERTY_SETTINGS
@given(workloads(failures=False, serial=True))
def test_serial_workloads_without_failures_run_every_job_once_in_dependency_order(workload: Workload) -> None:
    simulation = play(workload)
    for job in simulation.model.jobs.values():
        assert job.status is Status.SUCCEEDED
        assert job.attempt == 1
        for dep in job.spec.deps:
            assert simulation.model.jobs[dep].starts[0] <= job.starts[0]
    assert simulation.stale_rejected == 0


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 40)),  # (priority, ready time in whole seconds)
        min_size=1,
        max_size=30,
    ),
    st.sampled_from([1.0, 2.0, 4.0, 8.0]),
    st.lists(st.integers(0, 10_000), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_queue_order_is_highest_effective_priority_first_at_any_time(
    entries: list[tuple[int, int]], aging: float, observe_at: list[int], rnd: random.Random
) -> None:
    """Order and position match a brute-force sort by `level + waited / aging_interval`, FIFO by seq among
    equals, evaluated at any later time (exact arithmetic: whole seconds, power-of-two intervals)."""
    core = SchedulerCore(Resources(1, 1), aging, random.Random(0))  # supervisor never ready: nothing starts
    jobs = [(f"j{seq}", seq, level, float(ready)) for seq, (level, ready) in enumerate(entries, 1)]
    shuffled = jobs[:]
    rnd.shuffle(shuffled)
    for job_id, seq, level, ready in shuffled:
        new = NewJob(
            job_id=job_id,
            type="noop",
            seq=seq,
            priority=level,
            cpu_units=1,
            memory_mb=1,
            depends_on=[],
            status=Status.PENDING,
            created_at=ready,
            run_at=None,
            timeout_seconds=None,
            retry=RetryPolicy(),
        )
        core.admit(new, {}, ready)
    assert core.take_effects() == Effects()
    latest = max(ready for *_, ready in jobs)
    for offset in observe_at:
        now = latest + offset
        core.tick(now)
        expected = sorted(jobs, key=lambda j: (-(j[2] + (now - j[3]) / aging), j[1]))
        assert list(core.queue) == [j[0] for j in expected]
        for position, (job_id, *_) in enumerate(expected):
            assert core.position(job_id) == position
    assert core.take_effects() == Effects()


@PROPERTY_SETTINGS
@given(
    initial=st.floats(0.001, 1000.0),
    multiplier=st.floats(1.0, 10.0),
    max_delay=st.floats(0.001, 1e6),
    jitter=st.floats(0.0, 1.0),
    attempt=st.integers(1, 200),
    fraction=st.floats(0.0, 1.0, exclude_max=True),
)
def test_delay_after_is_the_capped_backoff_lengthened_by_at_most_the_jitter(
    initial: float, multiplier: float, max_delay: float, jitter: float, attempt: int, fraction: float
) -> None:
    policy = RetryPolicy(
        max_attempts=3,
        backoff_multiplier=multiplier,
        initial_delay_seconds=initial,
        max_delay_seconds=max_delay,
        jitter=jitter,
    )
    exact = math.exp(math.log(initial) + (attempt - 1) * math.log(multiplier))
    base = min(exact, max_delay)
    delay = policy.delay_after(attempt, fraction)
    assert math.isclose(delay, base * (1.0 + jitter * fraction), rel_tol=1e-9)
    assert policy.delay_after(attempt, 0.0) <= delay <= base * (1.0 + jitter) * (1 + 1e-9)
    assert policy.delay_after(attempt, fraction) <= policy.delay_after(attempt + 1, fraction) * (1 + 1e-9)


def expected_fate(policy: RetryPolicy, script: list[Outcome]) -> tuple[Status, int, str]:
    """Reference: the final status, the number of attempts started and the last event, from the outcomes."""
    charged = 0
    for attempt, outcome in enumerate([*script, Outcome.SUCCEEDED], 1):
        if outcome is Outcome.SUCCEEDED:
            return Status.SUCCEEDED, attempt, "succeeded"
        if outcome is Outcome.CANCELLED:
            return Status.CANCELLED, attempt, "cancelled"
        if outcome is Outcome.INTERRUPTED:
            continue
        charged += 1
        if outcome is Outcome.PERMANENT_FAILURE:
            return Status.FAILED, attempt, "failed"
        if charged == policy.max_attempts:
            return Status.FAILED, attempt, "failed" if outcome is Outcome.FAILED else outcome.value
    raise AssertionError("unreachable")


@PROPERTY_SETTINGS
@given(
    policy=RETRIES | st.builds(RetryPolicy, max_attempts=st.integers(1, 6), jitter=st.sampled_from([0.0, 0.3])),
    script=st.lists(OUTCOMES.filter(lambda o: o is not Outcome.SUCCEEDED), max_size=10),
    seed=st.integers(0, 2**32 - 1),
)
def test_retry_accounting_matches_a_reference(policy: RetryPolicy, script: list[Outcome], seed: int) -> None:
    """Interrupted attempts are free, retryable ones are retried until max_attempts, the rest are final;
    each retry waits at least the backoff and starts as the next attempt number."""
    core = SchedulerCore(Resources(1, 1), 1.0, random.Random(seed))
    core.supervisor_ready_with([], 0.0)
    new = NewJob(
        job_id="j",
        type="noop",
        seq=1,
        priority=0,
        cpu_units=1,
        memory_mb=1,
        depends_on=[],
        status=Status.PENDING,
        created_at=0.0,
        run_at=None,
        timeout_seconds=None,
        retry=policy,
    )
    core.admit(new, {}, 0.0)
    now, attempt, last = 0.0, 0, None
    outcomes = [*script, Outcome.SUCCEEDED]
    while "j" in core.jobs:
        core.tick(now)
        (start,) = core.take_effects().starts
        attempt += 1
        assert (start.attempt, start.at) == (attempt, now)
        now += 1.0
        assert core.attempt_finished("j", attempt, outcomes[attempt - 1], None, None, now)
        (last,) = core.take_effects().transitions
        if last.status is Status.SCHEDULED:
            assert last.next_run_at is not None
            assert last.next_run_at >= now
            assert core.tick(last.next_run_at - 1e-6) is None
            assert not core.take_effects().starts
            now = last.next_run_at
    assert last is not None
    assert (last.status, attempt, last.event) == expected_fate(policy, script)
