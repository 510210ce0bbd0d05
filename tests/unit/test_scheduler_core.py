"""Example-based tests of the pure scheduler core: every event is a method call with an explicit fake `now`."""

from __future__ import annotations

import random
from collections.abc import Iterable

import msgspec
import pytest

from service.model import Outcome, Resources, RetryPolicy, Status
from service.protocol import NewJob
from service.scheduler.core import Effects, Restored, SchedulerCore, Transition

CAPACITY = Resources(8, 4096)
AGING = 60.0
SEED = 1234
LOW, NORMAL, HIGH, CRITICAL = 0, 1, 2, 3
KILL_GRACE = 2.0
NO_JITTER = RetryPolicy(max_attempts=3, backoff_multiplier=2.0, initial_delay_seconds=1.0, jitter=0.0)


def new_job(
    job_id: str,
    seq: int,
    *,
    priority: int = NORMAL,
    cpu: int = 1,
    mem: int = 128,
    deps: Iterable[str] = (),
    status: Status = Status.PENDING,
    created_at: float = 0.0,
    run_at: float | None = None,
    timeout: float | None = None,
    retry: RetryPolicy = NO_JITTER,
    job_type: str = "noop",
) -> NewJob:
    return NewJob(
        job_id=job_id,
        type=job_type,
        seq=seq,
        priority=priority,
        cpu_units=cpu,
        memory_mb=mem,
        depends_on=list(deps),
        status=status,
        created_at=created_at,
        run_at=run_at,
        timeout_seconds=timeout,
        retry=retry,
    )


def make_core(
    capacity: Resources = CAPACITY,
    aging: float = AGING,
    seed: int = SEED,
    *,
    ready: bool = True,
    kill_grace: float = KILL_GRACE,
) -> SchedulerCore:
    core = SchedulerCore(capacity, aging, random.Random(seed), kill_grace=kill_grace)
    if ready:
        core.supervisor_ready_with([], 0.0)
        assert not core.take_effects()
    return core


def admit(core: SchedulerCore, job: NewJob, now: float = 0.0, dep_status: dict[str, str] | None = None) -> Effects:
    core.admit(job, dep_status or {}, now)
    return core.take_effects()


def tick(core: SchedulerCore, now: float) -> Effects:
    core.tick(now)
    return core.take_effects()


def finish(
    core: SchedulerCore,
    job_id: str,
    attempt: int,
    outcome: Outcome,
    now: float,
    *,
    error: str | None = None,
    result: object = None,
) -> Effects:
    assert core.attempt_finished(job_id, attempt, outcome, error, result, now)
    return core.take_effects()


def started(effects: Effects) -> list[str]:
    return [s.job_id for s in effects.starts]


def only_transition(effects: Effects, job_id: str) -> Transition:
    found = [t for t in effects.transitions if t.job_id == job_id]
    assert len(found) == 1, effects.transitions
    return found[0]


def transitions_of(effects: Effects) -> dict[str, tuple[Status, str]]:
    return {t.job_id: (t.status, t.event) for t in effects.transitions}


def pending_ids(core: SchedulerCore) -> list[str]:
    return list(core.queue)


def run_one(core: SchedulerCore, job: NewJob, now: float = 0.0) -> Effects:
    """Admit a job into an idle core and start it."""
    admit(core, job, now)
    effects = tick(core, now)
    assert started(effects) == [job.job_id]
    return effects


def used_by_running(core: SchedulerCore) -> Resources:
    total = Resources(0, 0)
    for job in core.running.values():
        total = total + job.need
    return total


# ------------------------------------------------------------------------------------------ RetryPolicy


def test_retry_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.backoff_multiplier, policy.initial_delay_seconds) == (3, 2.0, 1.0)
    assert (policy.max_delay_seconds, policy.jitter) == (3600.0, 0.1)


def test_delay_after_grows_geometrically_from_initial_delay() -> None:
    policy = RetryPolicy(initial_delay_seconds=1.5, backoff_multiplier=3.0, max_delay_seconds=1e9, jitter=0.0)
    assert [policy.delay_after(n, 0.0) for n in range(1, 6)] == [1.5, 4.5, 13.5, 40.5, 121.5]


def test_delay_after_attempt_zero_or_negative_is_the_initial_delay() -> None:
    policy = RetryPolicy(initial_delay_seconds=2.0, backoff_multiplier=2.0, jitter=0.0)
    assert policy.delay_after(0, 0.0) == 2.0
    assert policy.delay_after(-3, 0.0) == 2.0


def test_delay_after_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(initial_delay_seconds=1.0, backoff_multiplier=2.0, max_delay_seconds=10.0, jitter=0.0)
    assert [policy.delay_after(n, 0.0) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_delay_after_jitter_lengthens_by_fraction_of_jitter() -> None:
    policy = RetryPolicy(initial_delay_seconds=10.0, backoff_multiplier=2.0, max_delay_seconds=1000.0, jitter=0.2)
    assert policy.delay_after(1, 0.0) == 10.0
    assert policy.delay_after(1, 0.5) == pytest.approx(11.0)
    assert policy.delay_after(2, 0.25) == pytest.approx(21.0)
    assert policy.delay_after(1, 0.999999) < 12.0


def test_delay_after_jitter_applies_on_top_of_the_cap() -> None:
    policy = RetryPolicy(initial_delay_seconds=1.0, backoff_multiplier=10.0, max_delay_seconds=50.0, jitter=0.5)
    assert policy.delay_after(5, 0.5) == pytest.approx(62.5)


def test_delay_after_huge_attempt_number_is_capped_instead_of_overflowing() -> None:
    policy = RetryPolicy(initial_delay_seconds=1.0, backoff_multiplier=10.0, max_delay_seconds=3600.0, jitter=0.0)
    assert policy.delay_after(10_000, 0.0) == 3600.0
    assert policy.delay_after(10_000, 0.5) == 3600.0


def test_delay_after_with_multiplier_one_is_constant() -> None:
    policy = RetryPolicy(initial_delay_seconds=7.0, backoff_multiplier=1.0, jitter=0.0)
    assert {policy.delay_after(n, 0.0) for n in range(1, 50)} == {7.0}


def test_delay_after_with_zero_initial_delay_stays_zero_for_large_attempts() -> None:
    policy = RetryPolicy(initial_delay_seconds=0.0, backoff_multiplier=10.0, max_delay_seconds=3600.0, jitter=0.0)
    assert policy.delay_after(400, 0.0) == 0.0


# ------------------------------------------------------------------------------------------ dispatch


def test_nothing_dispatches_before_supervisor_ready() -> None:
    core = make_core(ready=False)
    admit(core, new_job("a", 1))
    assert started(tick(core, 1.0)) == []
    assert core.running == {}
    core.supervisor_ready_with([], 2.0)
    assert started(core.take_effects()) == []  # dispatch is only in tick
    assert started(tick(core, 2.0)) == ["a"]


def test_supervisor_lost_pauses_dispatch_until_it_is_ready_again() -> None:
    core = make_core()
    core.supervisor_lost()
    admit(core, new_job("a", 1))
    assert started(tick(core, 1.0)) == []
    core.supervisor_ready_with([], 2.0)
    assert started(tick(core, 2.0)) == ["a"]


def test_admit_alone_starts_nothing_dispatch_only_happens_in_tick() -> None:
    core = make_core()
    effects = admit(core, new_job("a", 1))
    assert effects.starts == []
    assert core.position("a") == 0


def test_start_effect_carries_attempt_time_timeout_and_memory() -> None:
    core = make_core()
    admit(core, new_job("a", 1, cpu=2, mem=300, timeout=12.5))
    (start,) = tick(core, 5.0).starts
    assert (start.job_id, start.attempt, start.at, start.timeout_seconds, start.memory_mb) == ("a", 1, 5.0, 12.5, 300)
    assert core.jobs["a"].status is Status.RUNNING
    assert core.position("a") is None


def test_jobs_start_while_they_fit_and_used_tracks_the_running_set() -> None:
    core = make_core()
    for i in range(5):
        admit(core, new_job(f"j{i}", i, cpu=2, mem=1000))
    assert started(tick(core, 1.0)) == ["j0", "j1", "j2", "j3"]  # a fifth would need 10 cpu and 5000 MB
    assert core.used == Resources(8, 4000)
    assert core.used == used_by_running(core)
    finish(core, "j0", 1, Outcome.SUCCEEDED, 2.0)
    assert core.used == Resources(6, 3000)
    assert started(tick(core, 2.0)) == ["j4"]
    assert core.used == Resources(8, 4000)


def test_memory_alone_can_hold_back_the_head() -> None:
    core = make_core()
    admit(core, new_job("big", 1, cpu=1, mem=4000))
    admit(core, new_job("next", 2, cpu=1, mem=200))
    assert started(tick(core, 0.0)) == ["big"]
    assert core.position("next") == 0
    finish(core, "big", 1, Outcome.SUCCEEDED, 1.0)
    assert started(tick(core, 1.0)) == ["next"]


def test_head_of_line_big_job_blocks_smaller_jobs_behind_it() -> None:
    core = make_core()
    run_one(core, new_job("small_running", 1, cpu=4))
    admit(core, new_job("big", 2, priority=HIGH, cpu=8))
    admit(core, new_job("small", 3, priority=NORMAL, cpu=1))
    assert started(tick(core, 1.0)) == []  # "small" would fit, but "big" is ahead and does not
    assert pending_ids(core) == ["big", "small"]
    finish(core, "small_running", 1, Outcome.SUCCEEDED, 2.0)
    assert started(tick(core, 2.0)) == ["big"]
    finish(core, "big", 1, Outcome.SUCCEEDED, 3.0)
    assert started(tick(core, 3.0)) == ["small"]


def test_strict_priority_order_when_saturated() -> None:
    core = make_core()
    run_one(core, new_job("first", 0, cpu=8))
    levels = [LOW, NORMAL, HIGH, CRITICAL] * 3
    random.Random(7).shuffle(levels)
    jobs = [new_job(f"j{seq}", seq, priority=level, cpu=8, created_at=1.0) for seq, level in enumerate(levels, 1)]
    admission_order = jobs[:]
    random.Random(8).shuffle(admission_order)  # seq, not admission order, is the FIFO tie-break
    for job in admission_order:
        admit(core, job, 1.0)
    expected = [j.job_id for j in sorted(jobs, key=lambda j: (-j.priority, j.seq))]

    running, order, now = "first", [], 2.0
    while running is not None:
        finish(core, running, 1, Outcome.SUCCEEDED, now)
        effects = tick(core, now)
        assert len(effects.starts) <= 1
        running = effects.starts[0].job_id if effects.starts else None
        if running is not None:
            order.append(running)
        now += 1.0
    assert order == expected
    assert [core.jobs.get(j) for j in expected] == [None] * len(expected)


def test_fifo_by_seq_within_one_priority() -> None:
    core = make_core(capacity=Resources(1, 4096))
    run_one(core, new_job("busy", 0))
    for seq in (5, 3, 9, 1):
        admit(core, new_job(f"j{seq}", seq, created_at=1.0), 1.0)
    assert pending_ids(core) == ["j1", "j3", "j5", "j9"]


# ------------------------------------------------------------------------------------------ backfill
# While the head of the line does not fit, later jobs may start only if they cannot delay the head's reservation:
# the earliest time enough is sure to be free, each running attempt counted as ending at start + timeout + grace.


def test_backfills_a_job_that_ends_before_the_heads_reservation() -> None:
    core = make_core(capacity=Resources(4, 4096))
    run_one(core, new_job("r", 1, cpu=2, timeout=10.0), 100.0)  # sure to end by 112
    admit(core, new_job("head", 2, priority=HIGH, cpu=4), 101.0)
    admit(core, new_job("short", 3, priority=LOW, cpu=2, timeout=5.0), 101.0)  # sure to end by 108
    effects = tick(core, 101.0)
    assert [(s.job_id, s.backfilled) for s in effects.starts] == [("short", True)]
    assert core.reservation is not None
    assert (core.reservation.job_id, core.reservation.at) == ("head", 112.0)
    assert core.position("head") == 0


def test_does_not_backfill_a_job_that_could_outlast_the_reservation() -> None:
    core = make_core(capacity=Resources(4, 4096))
    run_one(core, new_job("r", 1, cpu=2, timeout=10.0), 100.0)
    admit(core, new_job("head", 2, priority=HIGH, cpu=4), 101.0)
    admit(core, new_job("long", 3, priority=LOW, cpu=2, timeout=20.0), 101.0)
    admit(core, new_job("unbounded", 4, priority=LOW, cpu=1), 101.0)
    assert tick(core, 101.0).starts == []
    assert pending_ids(core) == ["head", "long", "unbounded"]
    finish(core, "r", 1, Outcome.SUCCEEDED, 105.0)
    assert [(s.job_id, s.backfilled) for s in tick(core, 105.0).starts] == [("head", False)]


def test_backfills_into_what_the_head_leaves_over_at_its_reservation() -> None:
    core = make_core(capacity=Resources(8, 4096))
    run_one(core, new_job("r", 1, cpu=4, timeout=10.0), 100.0)
    admit(core, new_job("head", 2, priority=HIGH, cpu=6), 101.0)  # at 112 it leaves 2 cpu over
    admit(core, new_job("a", 3, priority=LOW, cpu=2), 101.0)  # no timeout, but fits in the 2 left over
    admit(core, new_job("b", 4, priority=LOW, cpu=2), 101.0)  # would fit now, but not beside the head later
    effects = tick(core, 101.0)
    assert [(s.job_id, s.backfilled) for s in effects.starts] == [("a", True)]
    assert core.reservation is not None
    assert core.reservation.extra.cpu_units == 2
    assert pending_ids(core) == ["head", "b"]


def test_jobs_ahead_of_a_blocked_head_start_normally_and_later_heads_get_no_reservation() -> None:
    core = make_core(capacity=Resources(4, 4096))
    run_one(core, new_job("r", 1, cpu=2, timeout=10.0), 100.0)
    admit(core, new_job("first", 2, priority=CRITICAL, cpu=1, timeout=1.0), 101.0)
    admit(core, new_job("head", 3, priority=HIGH, cpu=4), 101.0)
    admit(core, new_job("second_big", 4, priority=NORMAL, cpu=3), 101.0)
    admit(core, new_job("short", 5, priority=LOW, cpu=1, timeout=1.0), 101.0)
    effects = tick(core, 101.0)
    assert [(s.job_id, s.backfilled) for s in effects.starts] == [("first", False), ("short", True)]
    assert core.reservation is not None
    assert core.reservation.job_id == "head"


def test_nothing_is_backfilled_while_the_supervisor_is_away() -> None:
    core = make_core(capacity=Resources(4, 4096))
    run_one(core, new_job("r", 1, cpu=2, timeout=10.0), 100.0)
    admit(core, new_job("head", 2, priority=HIGH, cpu=4), 101.0)
    admit(core, new_job("short", 3, priority=LOW, cpu=2, timeout=1.0), 101.0)
    core.supervisor_lost()
    assert tick(core, 101.0).starts == []
    assert core.reservation is None


def test_blocked_head_with_two_running_jobs_without_timeouts_does_not_crash_tick() -> None:
    core = make_core(capacity=Resources(4, 4096))
    admit(core, new_job("r1", 1, cpu=1), 100.0)
    admit(core, new_job("r2", 2, cpu=2), 100.0)
    assert started(tick(core, 100.0)) == ["r1", "r2"]
    admit(core, new_job("head", 3, cpu=4), 101.0)
    assert tick(core, 101.0).starts == []
    assert core.reservation is not None
    assert core.reservation.job_id == "head"


def test_running_jobs_ending_at_the_same_time_free_their_resources_together() -> None:
    core = make_core(capacity=Resources(6, 4096))
    admit(core, new_job("r1", 1, cpu=2, timeout=10.0), 100.0)
    admit(core, new_job("r2", 2, cpu=2, timeout=10.0), 100.0)
    assert started(tick(core, 100.0)) == ["r1", "r2"]
    admit(core, new_job("head", 3, priority=HIGH, cpu=5), 101.0)
    admit(core, new_job("short", 4, priority=LOW, cpu=2, timeout=5.0), 101.0)
    assert [(s.job_id, s.backfilled) for s in tick(core, 101.0).starts] == [("short", True)]
    assert core.reservation is not None
    assert (core.reservation.job_id, core.reservation.at, core.reservation.extra.cpu_units) == ("head", 112.0, 1)


def test_an_attempt_started_at_time_zero_keeps_its_true_end_bound() -> None:
    core = make_core(capacity=Resources(4, 4096))
    run_one(core, new_job("r", 1, cpu=2, timeout=10.0), 0.0)  # sure to end by 12
    admit(core, new_job("head", 2, priority=HIGH, cpu=4), 5.0)
    admit(core, new_job("b", 3, priority=LOW, cpu=2, timeout=8.0), 5.0)  # sure to end by 15 only
    assert tick(core, 5.0).starts == []
    assert core.reservation is not None
    assert core.reservation.at == 12.0


def test_lower_priority_job_does_not_overtake_a_head_blocked_behind_an_unbounded_attempt() -> None:
    core = make_core(capacity=Resources(4, 4096))
    run_one(core, new_job("r", 1, cpu=2), 100.0)  # no timeout: its end is unknown
    admit(core, new_job("head", 2, priority=CRITICAL, cpu=4), 101.0)
    admit(core, new_job("low", 3, priority=LOW, cpu=2, timeout=3600.0), 101.0)
    assert tick(core, 101.0).starts == []  # "low" could hold its cpu for an hour after "r" ends


# ------------------------------------------------------------------------------------------ position


def test_position_counts_pending_jobs_ahead_in_dispatch_order() -> None:
    core = make_core(capacity=Resources(1, 4096))
    run_one(core, new_job("busy", 0))
    admit(core, new_job("n1", 1, priority=NORMAL, created_at=1.0), 1.0)
    admit(core, new_job("l2", 2, priority=LOW, created_at=1.0), 1.0)
    admit(core, new_job("c3", 3, priority=CRITICAL, created_at=1.0), 1.0)
    admit(core, new_job("n4", 4, priority=NORMAL, created_at=1.0), 1.0)
    admit(core, new_job("h5", 5, priority=HIGH, created_at=1.0), 1.0)
    expected = {"c3": 0, "h5": 1, "n1": 2, "n4": 3, "l2": 4}
    assert {job_id: core.position(job_id) for job_id in expected} == expected
    assert core.position("busy") is None

    core.cancel("h5", 2.0)
    assert {job_id: core.position(job_id) for job_id in ("c3", "n1", "n4", "l2")} == {
        "c3": 0,
        "n1": 1,
        "n4": 2,
        "l2": 3,
    }
    finish(core, "busy", 1, Outcome.SUCCEEDED, 3.0)
    assert started(tick(core, 3.0)) == ["c3"]
    assert [core.position(j) for j in ("c3", "n1", "n4", "l2")] == [None, 0, 1, 2]


def test_position_is_none_for_blocked_scheduled_running_and_unknown_jobs() -> None:
    core = make_core(capacity=Resources(1, 4096))
    run_one(core, new_job("running", 1))
    admit(core, new_job("blocked", 2, deps=["running"], status=Status.BLOCKED))
    admit(core, new_job("scheduled", 3, status=Status.SCHEDULED, run_at=100.0))
    admit(core, new_job("pending", 4))
    assert core.jobs["blocked"].status is Status.BLOCKED
    assert core.jobs["scheduled"].status is Status.SCHEDULED
    assert [core.position(j) for j in ("running", "blocked", "scheduled", "unknown")] == [None] * 4
    assert core.position("pending") == 0


# ------------------------------------------------------------------------------------------ aging


def test_low_job_that_waited_three_aging_intervals_longer_is_ahead_of_a_later_critical_job() -> None:
    core = make_core(capacity=Resources(1, 4096))
    run_one(core, new_job("busy", 0))
    admit(core, new_job("low", 1, priority=LOW, created_at=0.0), 0.0)
    late = 3 * AGING + 1.0
    admit(core, new_job("critical", 2, priority=CRITICAL, created_at=late), late)
    assert pending_ids(core) == ["low", "critical"]
    assert core.position("low") == 0
    assert core.position("critical") == 1
    finish(core, "busy", 1, Outcome.SUCCEEDED, late + 1)
    assert started(tick(core, late + 1)) == ["low"]


def test_critical_job_arriving_less_than_three_intervals_later_is_ahead_of_the_low_job() -> None:
    core = make_core(capacity=Resources(1, 4096))
    run_one(core, new_job("busy", 0))
    admit(core, new_job("low", 1, priority=LOW, created_at=0.0), 0.0)
    late = 3 * AGING - 1.0
    admit(core, new_job("critical", 2, priority=CRITICAL, created_at=late), late)
    assert pending_ids(core) == ["critical", "low"]


def test_equal_effective_priority_is_broken_by_seq() -> None:
    core = make_core(capacity=Resources(1, 4096))
    run_one(core, new_job("busy", 0))
    admit(core, new_job("high", 1, priority=HIGH, created_at=AGING), AGING)
    admit(core, new_job("normal", 2, priority=NORMAL, created_at=0.0), AGING)  # same effective priority
    assert pending_ids(core) == ["high", "normal"]


def test_jobs_admitted_at_the_same_time_never_swap_order_as_time_passes() -> None:
    core = make_core(capacity=Resources(1, 4096), ready=False)
    levels = [LOW, CRITICAL, NORMAL, HIGH, LOW, CRITICAL, HIGH]
    for seq, level in enumerate(levels, 1):
        admit(core, new_job(f"j{seq}", seq, priority=level, created_at=10.0), 10.0)
    before = pending_ids(core)
    positions = {j: core.position(j) for j in before}
    for now in (11.0, 100.0, 10 * AGING, 1000 * AGING, 1e7):
        tick(core, now)
        assert pending_ids(core) == before
        assert {j: core.position(j) for j in before} == positions


def test_committed_pending_job_is_placed_by_its_created_at_without_a_transition() -> None:
    core = make_core(capacity=Resources(1, 4096))
    run_one(core, new_job("busy", 0))
    admit(core, new_job("early", 1, created_at=0.0), 500.0)
    effects = admit(core, new_job("earlier_ready", 2, priority=NORMAL, created_at=-3 * AGING), 500.0)
    assert effects.transitions == []  # already committed pending: nothing to write
    assert pending_ids(core) == ["earlier_ready", "early"]


# ------------------------------------------------------------------------------------------ admission


def test_admit_ignores_duplicates_and_terminal_jobs() -> None:
    core = make_core(ready=False)
    admit(core, new_job("a", 1, priority=LOW))
    assert admit(core, new_job("a", 1, priority=CRITICAL, cpu=8)) == Effects()
    assert core.jobs["a"].level == LOW
    for status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.UPSTREAM_FAILED):
        assert admit(core, new_job(f"t_{status}", 2, status=status)) == Effects()
        assert f"t_{status}" not in core.jobs
    assert pending_ids(core) == ["a"]


def test_admit_committed_blocked_whose_dependencies_already_succeeded_becomes_ready() -> None:
    core = make_core(ready=False)
    effects = admit(
        core, new_job("child", 2, deps=["p"], status=Status.BLOCKED), 3.0, dep_status={"p": Status.SUCCEEDED}
    )
    t = only_transition(effects, "child")
    assert (t.status, t.event, t.at) == (Status.PENDING, "ready", 3.0)
    assert core.position("child") == 0


def test_admit_committed_pending_with_a_live_parent_is_corrected_to_blocked() -> None:
    core = make_core(ready=False)
    admit(core, new_job("p", 1))
    effects = admit(core, new_job("child", 2, deps=["p"], status=Status.PENDING), 1.0)
    t = only_transition(effects, "child")
    assert (t.status, t.event) == (Status.BLOCKED, "blocked")
    assert core.position("child") is None


def test_admit_committed_blocked_with_a_live_parent_writes_nothing() -> None:
    core = make_core(ready=False)
    admit(core, new_job("p", 1))
    assert admit(core, new_job("child", 2, deps=["p"], status=Status.BLOCKED), 1.0) == Effects()
    assert core.jobs["child"].status is Status.BLOCKED


# ------------------------------------------------------------------------------------------ dependencies


def test_child_is_blocked_until_all_parents_succeed_then_ready() -> None:
    core = make_core()
    admit(core, new_job("p1", 1))
    admit(core, new_job("p2", 2))
    admit(core, new_job("child", 3, deps=["p1", "p2"], status=Status.BLOCKED))
    assert started(tick(core, 0.0)) == ["p1", "p2"]
    effects = finish(core, "p1", 1, Outcome.SUCCEEDED, 1.0, result={"x": 1})
    assert transitions_of(effects) == {"p1": (Status.SUCCEEDED, "succeeded")}
    assert only_transition(effects, "p1").result == {"x": 1}
    assert core.jobs["child"].status is Status.BLOCKED
    assert started(tick(core, 1.0)) == []

    effects = finish(core, "p2", 1, Outcome.SUCCEEDED, 2.0)
    assert transitions_of(effects) == {"p2": (Status.SUCCEEDED, "succeeded"), "child": (Status.PENDING, "ready")}
    assert only_transition(effects, "child").at == 2.0
    assert started(tick(core, 2.0)) == ["child"]


def test_parent_exhausting_its_attempts_fails_all_descendants_transitively() -> None:
    core = make_core()
    once = RetryPolicy(max_attempts=1)
    admit(core, new_job("root", 1, retry=once))
    admit(core, new_job("other", 2))
    admit(core, new_job("mid", 3, deps=["root"], status=Status.BLOCKED))
    admit(core, new_job("leaf", 4, deps=["mid", "other"], status=Status.BLOCKED))
    admit(core, new_job("side", 5, deps=["other"], status=Status.BLOCKED))
    assert started(tick(core, 0.0)) == ["root", "other"]

    effects = finish(core, "root", 1, Outcome.FAILED, 1.0, error="boom")
    assert transitions_of(effects) == {
        "root": (Status.FAILED, "failed"),
        "mid": (Status.UPSTREAM_FAILED, "upstream_failed"),
        "leaf": (Status.UPSTREAM_FAILED, "upstream_failed"),
    }
    assert only_transition(effects, "root").error == "boom"
    assert only_transition(effects, "mid").error == "dependency root failed"
    assert only_transition(effects, "leaf").error == "dependency mid upstream_failed"
    assert set(core.jobs) == {"other", "side"}
    finish(core, "other", 1, Outcome.SUCCEEDED, 2.0)
    assert started(tick(core, 2.0)) == ["side"]


def test_parent_permanent_failure_fails_children_at_once_without_retry() -> None:
    core = make_core()
    admit(core, new_job("p", 1, retry=RetryPolicy(max_attempts=5)))
    admit(core, new_job("c", 2, deps=["p"], status=Status.BLOCKED))
    tick(core, 0.0)
    effects = finish(core, "p", 1, Outcome.PERMANENT_FAILURE, 1.0, error="bad input")
    assert transitions_of(effects) == {
        "p": (Status.FAILED, "failed"),
        "c": (Status.UPSTREAM_FAILED, "upstream_failed"),
    }
    assert only_transition(effects, "c").error == "dependency p failed"
    assert core.jobs == {}


def test_diamond_child_is_failed_once_when_both_parents_fail() -> None:
    core = make_core()
    once = RetryPolicy(max_attempts=1)
    admit(core, new_job("a", 1, retry=once))
    admit(core, new_job("b", 2, retry=once))
    admit(core, new_job("c", 3, deps=["a", "b"], status=Status.BLOCKED))
    tick(core, 0.0)
    first = finish(core, "a", 1, Outcome.FAILED, 1.0)
    second = finish(core, "b", 1, Outcome.FAILED, 2.0)
    assert [t.job_id for t in first.transitions + second.transitions].count("c") == 1


def test_duplicate_dependency_entries_are_harmless() -> None:
    core = make_core()
    admit(core, new_job("p", 1))
    admit(core, new_job("c", 2, deps=["p", "p"], status=Status.BLOCKED))
    tick(core, 0.0)
    effects = finish(core, "p", 1, Outcome.SUCCEEDED, 1.0)
    assert [t.job_id for t in effects.transitions] == ["p", "c"]
    assert started(tick(core, 1.0)) == ["c"]


def test_dependency_not_in_memory_that_succeeded_does_not_block() -> None:
    core = make_core()
    effects = admit(core, new_job("c", 2, deps=["done"], status=Status.PENDING), 1.0, {"done": "succeeded"})
    assert effects.transitions == []
    assert core.jobs["c"].status is Status.PENDING
    assert started(tick(core, 1.0)) == ["c"]


@pytest.mark.parametrize("dep_state", ["failed", "cancelled", "upstream_failed"])
def test_dependency_not_in_memory_that_did_not_succeed_fails_the_job_at_once(dep_state: str) -> None:
    core = make_core()
    effects = admit(core, new_job("c", 2, deps=["gone"], status=Status.BLOCKED), 1.0, {"gone": dep_state})
    t = only_transition(effects, "c")
    assert (t.status, t.event, t.error) == (Status.UPSTREAM_FAILED, "upstream_failed", f"dependency gone {dep_state}")
    assert "c" not in core.jobs
    assert started(tick(core, 1.0)) == []


def test_dependency_missing_from_memory_and_dep_status_fails_the_job() -> None:
    core = make_core()
    effects = admit(core, new_job("c", 2, deps=["nowhere"]), 1.0)
    assert only_transition(effects, "c").error == "dependency nowhere missing"
    assert "c" not in core.jobs


def test_failed_external_dependency_wins_over_a_live_parent() -> None:
    core = make_core()
    admit(core, new_job("live", 1))
    effects = admit(core, new_job("c", 2, deps=["live", "gone"], status=Status.BLOCKED), 1.0, {"gone": "failed"})
    assert transitions_of(effects) == {"c": (Status.UPSTREAM_FAILED, "upstream_failed")}
    tick(core, 1.0)
    assert transitions_of(finish(core, "live", 1, Outcome.SUCCEEDED, 2.0)) == {"live": (Status.SUCCEEDED, "succeeded")}


def test_blocked_child_of_a_failed_parent_can_still_be_admitted_later_and_fails() -> None:
    core = make_core()
    admit(core, new_job("p", 1, retry=RetryPolicy(max_attempts=1)))
    tick(core, 0.0)
    finish(core, "p", 1, Outcome.FAILED, 1.0)
    effects = admit(core, new_job("c", 2, deps=["p"], status=Status.BLOCKED), 2.0, {"p": "failed"})
    assert only_transition(effects, "c").status is Status.UPSTREAM_FAILED


def test_child_admitted_before_its_committed_parent_waits_for_it() -> None:
    core = make_core()
    effects = admit(core, new_job("c", 2, deps=["p"], status=Status.BLOCKED), 0.0, {"p": "pending"})
    assert effects == Effects()
    assert core.jobs["c"].status is Status.BLOCKED
    admit(core, new_job("p", 1), 0.0)
    assert started(tick(core, 0.0)) == ["p"]
    effects = finish(core, "p", 1, Outcome.SUCCEEDED, 1.0)
    assert transitions_of(effects)["c"] == (Status.PENDING, "ready")


def test_child_admitted_before_its_committed_parent_fails_with_it() -> None:
    core = make_core()
    admit(core, new_job("c", 2, deps=["p"], status=Status.BLOCKED), 0.0, {"p": "pending"})
    admit(core, new_job("p", 1), 0.0)
    assert core.cancel("p", 1.0) == "cancelled"
    assert transitions_of(core.take_effects())["c"] == (Status.UPSTREAM_FAILED, "upstream_failed")


@pytest.mark.parametrize(
    ("parent_outcome", "child_status"),
    [(Outcome.SUCCEEDED, Status.PENDING), (Outcome.PERMANENT_FAILURE, Status.UPSTREAM_FAILED)],
)
def test_how_a_parent_just_ended_here_wins_over_a_stale_dep_status(
    parent_outcome: Outcome, child_status: Status
) -> None:
    core = make_core()
    run_one(core, new_job("p", 1))
    finish(core, "p", 1, parent_outcome, 1.0)
    # The caller read the parent's status before this turn's write of its end: it still says running.
    core.admit(new_job("c", 2, deps=["p"], status=Status.BLOCKED), {"p": "running"}, 1.0)
    assert only_transition(core.take_effects(), "c").status is child_status


def test_cancelling_the_root_of_a_long_chain_fails_every_descendant() -> None:
    core = make_core()
    length = 1000
    admit(core, new_job("c0", 0))
    for i in range(1, length):
        admit(core, new_job(f"c{i}", i, deps=[f"c{i - 1}"], status=Status.BLOCKED))
    assert core.cancel("c0", 1.0) == "cancelled"
    effects = core.take_effects()
    assert len(effects.transitions) == length
    assert core.jobs == {}


# ------------------------------------------------------------------------------------------ retries


def test_failed_attempt_with_attempts_left_is_scheduled_after_a_jittered_backoff() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_multiplier=2.0, initial_delay_seconds=4.0, jitter=0.5)
    core = make_core(seed=99)
    run_one(core, new_job("a", 1, retry=policy), 0.0)
    effects = finish(core, "a", 1, Outcome.FAILED, 10.0, error="flaky")
    fraction = random.Random(99).random()
    delay = 4.0 * (1 + 0.5 * fraction)
    t = only_transition(effects, "a")
    assert (t.status, t.event, t.error, t.at) == (Status.SCHEDULED, "retry_scheduled", "flaky", 10.0)
    assert t.next_run_at == pytest.approx(10.0 + delay)
    assert t.data == {"delay_seconds": round(delay, 3), "outcome": "failed", "attempt": 1}
    assert [(c.job_id, c.attempt, c.outcome, c.error) for c in effects.closes] == [("a", 1, Outcome.FAILED, "flaky")]
    assert core.next_wakeup() == t.next_run_at
    assert core.used == Resources(0, 0)
    assert core.position("a") is None


def test_retry_is_not_started_before_its_due_time_and_starts_as_attempt_two_after() -> None:
    core = make_core()
    run_one(core, new_job("a", 1))
    t = only_transition(finish(core, "a", 1, Outcome.FAILED, 10.0), "a")
    assert t.next_run_at == 11.0  # initial delay 1s, no jitter
    effects = tick(core, 10.999)
    assert effects == Effects()
    assert core.jobs["a"].status is Status.SCHEDULED
    effects = tick(core, 11.0)
    assert transitions_of(effects) == {"a": (Status.PENDING, "ready")}
    assert [(s.job_id, s.attempt) for s in effects.starts] == [("a", 2)]
    assert core.next_wakeup() is None


def test_late_tick_promotes_an_overdue_retry() -> None:
    core = make_core()
    run_one(core, new_job("a", 1))
    finish(core, "a", 1, Outcome.FAILED, 10.0)
    effects = tick(core, 500.0)
    assert [(s.job_id, s.attempt, s.at) for s in effects.starts] == [("a", 2, 500.0)]


def test_retry_delays_grow_with_each_charged_attempt_and_are_capped() -> None:
    policy = RetryPolicy(
        max_attempts=6, backoff_multiplier=3.0, initial_delay_seconds=2.0, max_delay_seconds=30.0, jitter=0.0
    )
    core = make_core()
    run_one(core, new_job("a", 1, retry=policy))
    now, delays = 0.0, []
    for attempt in range(1, 6):
        t = only_transition(finish(core, "a", attempt, Outcome.FAILED, now), "a")
        assert t.event == "retry_scheduled"
        delays.append(t.data["delay_seconds"])
        now = t.next_run_at
        assert [s.attempt for s in tick(core, now).starts] == [attempt + 1]
    assert delays == [2.0, 6.0, 18.0, 30.0, 30.0]
    t = only_transition(finish(core, "a", 6, Outcome.FAILED, now, error="still broken"), "a")
    assert (t.status, t.event, t.error) == (Status.FAILED, "failed", "still broken")


@pytest.mark.parametrize("seed", range(20))
def test_retry_jitter_only_lengthens_the_delay_and_stays_within_the_jitter_fraction(seed: int) -> None:
    policy = RetryPolicy(max_attempts=2, backoff_multiplier=2.0, initial_delay_seconds=10.0, jitter=0.3)
    core = make_core(seed=seed)
    run_one(core, new_job("a", 1, retry=policy))
    t = only_transition(finish(core, "a", 1, Outcome.CRASHED, 0.0), "a")
    assert 10.0 <= t.next_run_at < 13.0


def test_attempts_exhausted_fails_the_job_with_the_error() -> None:
    core = make_core()
    run_one(core, new_job("a", 1, retry=RetryPolicy(max_attempts=2, jitter=0.0)))
    finish(core, "a", 1, Outcome.FAILED, 1.0)
    tick(core, 2.0)
    effects = finish(core, "a", 2, Outcome.FAILED, 3.0, error="nope")
    t = only_transition(effects, "a")
    assert (t.status, t.event, t.error) == (Status.FAILED, "failed", "nope")
    assert "a" not in core.jobs
    assert core.next_wakeup() is None


def test_exhausted_failure_without_an_error_message_uses_the_outcome() -> None:
    core = make_core()
    run_one(core, new_job("a", 1, retry=RetryPolicy(max_attempts=1)))
    t = only_transition(finish(core, "a", 1, Outcome.TIMED_OUT, 1.0), "a")
    assert (t.status, t.event, t.error) == (Status.FAILED, "timed_out", "timed_out")


def test_permanent_failure_fails_at_once_with_no_retry() -> None:
    core = make_core()
    run_one(core, new_job("a", 1, retry=RetryPolicy(max_attempts=10)))
    effects = finish(core, "a", 1, Outcome.PERMANENT_FAILURE, 1.0, error="invalid")
    t = only_transition(effects, "a")
    assert (t.status, t.event, t.error) == (Status.FAILED, "failed", "invalid")
    assert [c.outcome for c in effects.closes] == [Outcome.PERMANENT_FAILURE]
    assert core.jobs == {}
    assert core.next_wakeup() is None


@pytest.mark.parametrize("outcome", [Outcome.TIMED_OUT, Outcome.CRASHED, Outcome.MEMORY_EXCEEDED, Outcome.FAILED])
def test_retryable_outcomes_are_retried(outcome: Outcome) -> None:
    core = make_core()
    run_one(core, new_job("a", 1))
    t = only_transition(finish(core, "a", 1, outcome, 5.0, error="x"), "a")
    assert (t.status, t.event) == (Status.SCHEDULED, "retry_scheduled")
    assert t.data is not None
    assert t.data["outcome"] == outcome.value
    assert [(s.job_id, s.attempt) for s in tick(core, t.next_run_at).starts] == [("a", 2)]


def test_interrupted_attempt_goes_back_in_line_without_using_an_attempt() -> None:
    core = make_core()
    run_one(core, new_job("a", 1, retry=RetryPolicy(max_attempts=1)))
    effects = finish(core, "a", 1, Outcome.INTERRUPTED, 5.0)
    t = only_transition(effects, "a")
    assert (t.status, t.event, t.at) == (Status.PENDING, "interrupted", 5.0)
    assert core.position("a") == 0
    assert [(s.job_id, s.attempt) for s in tick(core, 5.0).starts] == [("a", 2)]
    # The one allowed attempt was not used up by the interruption: this failure is final, not retried.
    t = only_transition(finish(core, "a", 2, Outcome.FAILED, 6.0), "a")
    assert t.status is Status.FAILED


def test_interrupted_job_is_queued_behind_jobs_that_were_already_waiting() -> None:
    core = make_core(capacity=Resources(1, 4096))
    run_one(core, new_job("a", 1))
    admit(core, new_job("b", 2, created_at=1.0), 1.0)
    finish(core, "a", 1, Outcome.INTERRUPTED, 2.0)
    assert pending_ids(core) == ["b", "a"]


def test_cancelled_outcome_without_a_cancel_request_ends_cancelled() -> None:
    core = make_core()
    run_one(core, new_job("a", 1))
    admit(core, new_job("c", 2, deps=["a"], status=Status.BLOCKED))
    effects = finish(core, "a", 1, Outcome.CANCELLED, 1.0)
    assert transitions_of(effects) == {
        "a": (Status.CANCELLED, "cancelled"),
        "c": (Status.UPSTREAM_FAILED, "upstream_failed"),
    }


def test_retry_frees_resources_for_the_next_job_in_line() -> None:
    core = make_core()
    run_one(core, new_job("a", 1, cpu=8))
    admit(core, new_job("b", 2, cpu=8))
    finish(core, "a", 1, Outcome.FAILED, 1.0)
    assert started(tick(core, 1.0)) == ["b"]
    assert started(tick(core, 2.0)) == []  # a is due now but b holds every cpu
    assert core.jobs["a"].status is Status.PENDING
    finish(core, "b", 1, Outcome.SUCCEEDED, 3.0)
    assert [(s.job_id, s.attempt) for s in tick(core, 3.0).starts] == [("a", 2)]


# ------------------------------------------------------------------------------------------ drain


def test_drain_starts_nothing_new_but_lets_running_attempts_finish() -> None:
    core = make_core()
    run_one(core, new_job("a", 1))
    admit(core, new_job("b", 2))
    core.drain()
    assert tick(core, 1.0) == Effects()
    assert only_transition(finish(core, "a", 1, Outcome.SUCCEEDED, 2.0), "a").status is Status.SUCCEEDED
    assert tick(core, 2.0) == Effects()
    assert core.position("b") == 0


def test_interrupt_running_kills_each_attempt_once_and_requeues_it_uncharged() -> None:
    core = make_core()
    admit(core, new_job("a", 1, retry=RetryPolicy(max_attempts=1)))
    admit(core, new_job("b", 2))
    admit(core, new_job("c", 3))
    tick(core, 0.0)
    core.cancel("c", 0.5)
    core.take_effects()
    core.drain()
    core.interrupt_running()
    core.interrupt_running()
    effects = core.take_effects()
    assert sorted((k.job_id, k.attempt, k.outcome) for k in effects.kills) == [
        ("a", 1, Outcome.INTERRUPTED),
        ("b", 1, Outcome.INTERRUPTED),
    ]
    # However the killed attempt reports, short of success, it counts as interrupted: back in line, uncharged.
    effects = finish(core, "a", 1, Outcome.CRASHED, 1.0)
    assert [c.outcome for c in effects.closes] == [Outcome.INTERRUPTED]
    t = only_transition(effects, "a")
    assert (t.status, t.event, t.charged) == (Status.PENDING, "interrupted", 0)
    assert only_transition(finish(core, "b", 1, Outcome.SUCCEEDED, 1.0), "b").status is Status.SUCCEEDED
    assert only_transition(finish(core, "c", 1, Outcome.CRASHED, 1.0), "c").status is Status.CANCELLED


# ------------------------------------------------------------------------------------------ fencing


def snapshot(core: SchedulerCore) -> tuple[object, ...]:
    return (
        {j: (job.status, job.attempt, job.charged, job.ready_at, job.due_at) for j, job in core.jobs.items()},
        set(core.running),
        core.used,
        list(core.queue),
        core.next_wakeup(),
    )


def test_finish_with_a_stale_attempt_number_is_rejected_and_changes_nothing() -> None:
    core = make_core()
    run_one(core, new_job("a", 1))
    finish(core, "a", 1, Outcome.FAILED, 1.0)
    tick(core, 5.0)  # attempt 2 running
    before = snapshot(core)
    assert core.attempt_finished("a", 1, Outcome.SUCCEEDED, None, "late", 6.0) is False
    assert core.attempt_finished("a", 3, Outcome.SUCCEEDED, None, "early", 6.0) is False
    assert core.take_effects() == Effects()
    assert snapshot(core) == before


def test_finish_of_an_unknown_or_waiting_job_is_rejected() -> None:
    core = make_core()
    admit(core, new_job("pending", 1))
    admit(core, new_job("blocked", 2, deps=["pending"], status=Status.BLOCKED))
    before = snapshot(core)
    assert core.attempt_finished("ghost", 1, Outcome.SUCCEEDED, None, None, 1.0) is False
    assert core.attempt_finished("pending", 0, Outcome.FAILED, None, None, 1.0) is False
    assert core.attempt_finished("pending", 1, Outcome.FAILED, None, None, 1.0) is False
    assert core.attempt_finished("blocked", 0, Outcome.SUCCEEDED, None, None, 1.0) is False
    assert core.take_effects() == Effects()
    assert snapshot(core) == before


def test_second_finish_of_the_same_attempt_is_rejected() -> None:
    core = make_core()
    run_one(core, new_job("a", 1))
    finish(core, "a", 1, Outcome.SUCCEEDED, 1.0)
    assert core.attempt_finished("a", 1, Outcome.SUCCEEDED, None, None, 2.0) is False
    assert core.take_effects() == Effects()


def test_attempt_started_is_fenced_to_the_current_running_attempt() -> None:
    core = make_core()
    admit(core, new_job("a", 1))
    assert core.attempt_started("a", 1) is False  # not started yet
    tick(core, 0.0)
    assert core.attempt_started("a", 1) is True
    assert core.attempt_started("a", 2) is False
    assert core.attempt_started("ghost", 1) is False


# ------------------------------------------------------------------------------------------ cancel


def _waiting_job(core: SchedulerCore, kind: str) -> str:
    if kind == "pending":
        admit(core, new_job("w", 2))
    elif kind == "blocked":
        admit(core, new_job("w", 2, deps=["parent"], status=Status.BLOCKED))
    elif kind == "scheduled":
        admit(core, new_job("w", 2, status=Status.SCHEDULED, run_at=50.0))
    else:  # waiting for a retry
        run_one(core, new_job("w", 2))
        finish(core, "w", 1, Outcome.FAILED, 0.5)
    assert core.jobs["w"].status.value == ("scheduled" if kind == "retry" else kind)
    return "w"


@pytest.mark.parametrize("kind", ["pending", "blocked", "scheduled", "retry"])
def test_cancel_of_a_waiting_job_is_immediate_and_fails_descendants(kind: str) -> None:
    core = make_core(capacity=Resources(2, 4096))
    run_one(core, new_job("parent", 1))
    job_id = _waiting_job(core, kind)
    admit(core, new_job("child", 3, deps=[job_id], status=Status.BLOCKED))
    admit(core, new_job("grandchild", 4, deps=["child"], status=Status.BLOCKED))
    core.take_effects()

    assert core.cancel(job_id, 1.0) == "cancelled"
    effects = core.take_effects()
    assert transitions_of(effects) == {
        job_id: (Status.CANCELLED, "cancelled"),
        "child": (Status.UPSTREAM_FAILED, "upstream_failed"),
        "grandchild": (Status.UPSTREAM_FAILED, "upstream_failed"),
    }
    assert only_transition(effects, job_id).error == "cancelled before it ran"
    assert only_transition(effects, "child").error == f"dependency {job_id} cancelled"
    assert effects.kills == []
    assert set(core.jobs) == {"parent"}
    assert core.position(job_id) is None
    assert core.next_wakeup() is None
    finish(core, "parent", 1, Outcome.SUCCEEDED, 2.0)
    assert tick(core, 100.0) == Effects()
    assert core.cancel(job_id, 101.0) == "not_waiting"


def test_cancel_of_a_running_job_requests_a_kill_once() -> None:
    core = make_core()
    run_one(core, new_job("a", 1))
    assert core.cancel("a", 1.0) == "cancel_requested"
    effects = core.take_effects()
    assert [(k.job_id, k.attempt, k.outcome) for k in effects.kills] == [("a", 1, Outcome.CANCELLED)]
    assert effects.transitions == []
    assert core.jobs["a"].status is Status.RUNNING
    assert core.cancel("a", 2.0) == "cancel_requested"
    assert core.take_effects() == Effects()


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome.CANCELLED,
        Outcome.FAILED,
        Outcome.PERMANENT_FAILURE,
        Outcome.TIMED_OUT,
        Outcome.CRASHED,
        Outcome.MEMORY_EXCEEDED,
        Outcome.INTERRUPTED,
    ],
)
def test_cancel_requested_running_job_ends_cancelled_on_any_non_success_outcome(outcome: Outcome) -> None:
    core = make_core()
    run_one(core, new_job("a", 1, retry=RetryPolicy(max_attempts=5)))
    admit(core, new_job("c", 2, deps=["a"], status=Status.BLOCKED))
    core.cancel("a", 1.0)
    core.take_effects()
    effects = finish(core, "a", 1, outcome, 2.0, error="killed")
    assert transitions_of(effects) == {
        "a": (Status.CANCELLED, "cancelled"),
        "c": (Status.UPSTREAM_FAILED, "upstream_failed"),
    }
    assert [(c.attempt, c.outcome) for c in effects.closes] == [(1, Outcome.CANCELLED)]
    assert core.jobs == {}
    assert core.used == Resources(0, 0)
    assert core.next_wakeup() is None


def test_success_racing_a_cancel_ends_succeeded() -> None:
    core = make_core()
    run_one(core, new_job("a", 1))
    admit(core, new_job("c", 2, deps=["a"], status=Status.BLOCKED))
    core.cancel("a", 1.0)
    core.take_effects()
    effects = finish(core, "a", 1, Outcome.SUCCEEDED, 1.5, result=42)
    assert transitions_of(effects) == {"a": (Status.SUCCEEDED, "succeeded"), "c": (Status.PENDING, "ready")}
    assert only_transition(effects, "a").result == 42


def test_cancel_of_an_unknown_or_finished_job_is_not_waiting() -> None:
    core = make_core()
    assert core.cancel("ghost", 0.0) == "not_waiting"
    run_one(core, new_job("a", 1))
    finish(core, "a", 1, Outcome.SUCCEEDED, 1.0)
    assert core.cancel("a", 2.0) == "not_waiting"
    assert core.take_effects() == Effects()


# ------------------------------------------------------------------------------------------ supervisor reconciliation


def restored(
    job: NewJob,
    *,
    attempt: int = 0,
    charged: int | None = None,
    ready_at: float | None = None,
    next_run_at: float | None = None,
    started_at: float | None = None,
) -> Restored:
    return Restored(job, attempt, attempt if charged is None else charged, ready_at, next_run_at, started_at)


def restore_running(core: SchedulerCore, job: NewJob, attempt: int, started_at: float, now: float) -> None:
    running = msgspec.structs.replace(job, status=Status.RUNNING)
    core.restore(restored(running, attempt=attempt, started_at=started_at), {}, now)


def test_restored_running_job_the_supervisor_does_not_report_is_closed_as_crashed_and_retried() -> None:
    core = make_core(ready=False)
    restore_running(core, new_job("a", 1, retry=NO_JITTER), attempt=1, started_at=90.0, now=100.0)
    assert core.take_effects() == Effects()
    core.supervisor_ready_with([], 100.0)
    effects = core.take_effects()
    assert [(c.job_id, c.attempt, c.outcome) for c in effects.closes] == [("a", 1, Outcome.CRASHED)]
    t = only_transition(effects, "a")
    assert (t.status, t.event, t.next_run_at) == (Status.SCHEDULED, "retry_scheduled", 101.0)
    assert t.data is not None
    assert t.data["outcome"] == "crashed"
    assert core.used == Resources(0, 0)
    assert [(s.job_id, s.attempt) for s in tick(core, 101.0).starts] == [("a", 2)]


def test_restored_running_job_on_its_last_attempt_fails_when_lost() -> None:
    core = make_core(ready=False)
    restore_running(core, new_job("a", 1, retry=RetryPolicy(max_attempts=2)), attempt=2, started_at=0.0, now=1.0)
    core.supervisor_ready_with([], 1.0)
    t = only_transition(core.take_effects(), "a")
    assert (t.status, t.event) == (Status.FAILED, "crashed")


def test_restored_running_job_reported_by_the_supervisor_keeps_running() -> None:
    core = make_core(ready=False)
    restore_running(core, new_job("a", 1, cpu=3, mem=1000), attempt=2, started_at=5.0, now=10.0)
    core.supervisor_ready_with([("a", 2)], 10.0)
    assert core.take_effects() == Effects()
    assert core.jobs["a"].status is Status.RUNNING
    assert core.attempt_started("a", 2)
    effects = finish(core, "a", 2, Outcome.SUCCEEDED, 11.0)
    assert only_transition(effects, "a").status is Status.SUCCEEDED


def test_resources_of_restored_running_jobs_are_counted_before_anything_new_is_dispatched() -> None:
    core = make_core(ready=False)
    restore_running(core, new_job("r", 1, cpu=6, mem=1000), attempt=1, started_at=0.0, now=10.0)
    assert core.used == Resources(6, 1000)
    admit(core, new_job("big", 2, cpu=4), 10.0)
    admit(core, new_job("small", 3, cpu=2), 10.0)
    assert started(tick(core, 10.0)) == []  # supervisor not ready yet
    core.supervisor_ready_with([("r", 1)], 10.0)
    assert started(tick(core, 10.0)) == []  # only 2 cpu free: "big" heads the line
    finish(core, "r", 1, Outcome.SUCCEEDED, 11.0)
    assert started(tick(core, 11.0)) == ["big", "small"]
    assert core.used == Resources(6, 256)


def test_supervisor_running_an_attempt_the_scheduler_does_not_know_is_told_to_kill_it() -> None:
    core = make_core(ready=False)
    restore_running(core, new_job("a", 1), attempt=2, started_at=0.0, now=1.0)
    core.supervisor_ready_with([("a", 1), ("ghost", 3)], 1.0)
    effects = core.take_effects()
    # attempt 2 of "a" is not reported: closed as crashed; the unknown attempts are killed.
    assert [(c.job_id, c.attempt, c.outcome) for c in effects.closes] == [("a", 2, Outcome.CRASHED)]
    assert sorted((k.job_id, k.attempt) for k in effects.kills) == [("a", 1), ("ghost", 3)]
    assert {k.outcome for k in effects.kills} == {Outcome.CANCELLED}


def test_supervisor_reconnect_crashes_only_the_attempts_it_no_longer_runs() -> None:
    core = make_core()
    admit(core, new_job("a", 1))
    admit(core, new_job("b", 2))
    tick(core, 0.0)
    core.supervisor_lost()
    admit(core, new_job("c", 3))
    assert started(tick(core, 1.0)) == []
    core.supervisor_ready_with([("b", 1)], 2.0)
    effects = core.take_effects()
    assert [(c.job_id, c.outcome) for c in effects.closes] == [("a", Outcome.CRASHED)]
    assert effects.kills == []
    assert set(core.running) == {"b"}
    assert started(tick(core, 2.0)) == ["c"]


def test_restore_pending_keeps_its_place_and_its_attempt_count() -> None:
    core = make_core(capacity=Resources(1, 4096), ready=False)
    restore_running(core, new_job("busy", 0), attempt=1, started_at=0.0, now=100.0)
    core.restore(restored(new_job("late", 1, created_at=0.0), ready_at=90.0), {}, 100.0)
    core.restore(restored(new_job("retried", 2, created_at=0.0), attempt=2, ready_at=50.0), {}, 100.0)
    assert core.take_effects() == Effects()
    assert pending_ids(core) == ["retried", "late"]
    core.supervisor_ready_with([("busy", 1)], 100.0)
    finish(core, "busy", 1, Outcome.SUCCEEDED, 101.0)
    assert [(s.job_id, s.attempt) for s in tick(core, 101.0).starts] == [("retried", 3)]


def test_restored_attempts_that_were_interrupted_are_not_charged() -> None:
    core = make_core(ready=False)
    job = new_job("a", 1, retry=RetryPolicy(max_attempts=2, jitter=0.0))
    core.restore(restored(job, attempt=3, charged=0, ready_at=5.0), {}, 10.0)
    core.supervisor_ready_with([], 10.0)
    assert [(s.job_id, s.attempt) for s in tick(core, 10.0).starts] == [("a", 4)]
    t = only_transition(finish(core, "a", 4, Outcome.FAILED, 11.0), "a")
    assert (t.status, t.event) == (Status.SCHEDULED, "retry_scheduled")  # 1 of 2 attempts charged
    tick(core, t.next_run_at)
    t = only_transition(finish(core, "a", 5, Outcome.FAILED, 20.0), "a")
    assert t.status is Status.FAILED


@pytest.mark.parametrize(("charged", "status"), [(1, Status.SCHEDULED), (2, Status.FAILED)])
def test_restored_running_job_keeps_its_charged_count(charged: int, status: Status) -> None:
    core = make_core(ready=False)
    job = msgspec.structs.replace(new_job("a", 1, retry=RetryPolicy(max_attempts=2)), status=Status.RUNNING)
    core.restore(restored(job, attempt=2, charged=charged, started_at=5.0), {}, 10.0)
    core.supervisor_ready_with([("a", 2)], 10.0)
    # charged=1: attempt 1 was interrupted, so this crash leaves one attempt; charged=2: it was the last.
    assert only_transition(finish(core, "a", 2, Outcome.CRASHED, 11.0), "a").status is status


def test_restore_scheduled_waits_for_its_next_run_at() -> None:
    core = make_core(ready=False)
    job = new_job("a", 1, status=Status.SCHEDULED, run_at=None)
    core.restore(restored(job, attempt=1, next_run_at=200.0), {}, 100.0)
    assert core.take_effects() == Effects()
    core.supervisor_ready_with([], 100.0)
    assert core.next_wakeup() == 200.0
    assert started(tick(core, 199.0)) == []
    assert [(s.job_id, s.attempt) for s in tick(core, 200.0).starts] == [("a", 2)]


def test_restore_all_links_children_listed_before_their_parents() -> None:
    core = make_core(ready=False)
    items = [
        restored(new_job("grandchild", 3, deps=["child", "parent"], status=Status.BLOCKED)),
        restored(new_job("child", 2, deps=["parent", "done"], status=Status.BLOCKED)),
        restored(msgspec.structs.replace(new_job("parent", 1), status=Status.RUNNING), attempt=1, started_at=5.0),
    ]
    core.restore_all(items, {"done": "succeeded"}, 10.0)
    assert core.take_effects() == Effects()
    assert {j: core.jobs[j].status for j in core.jobs} == {
        "parent": Status.RUNNING,
        "child": Status.BLOCKED,
        "grandchild": Status.BLOCKED,
    }
    core.supervisor_ready_with([("parent", 1)], 10.0)
    effects = finish(core, "parent", 1, Outcome.SUCCEEDED, 11.0)
    assert transitions_of(effects)["child"] == (Status.PENDING, "ready")
    assert "grandchild" not in transitions_of(effects)
    assert started(tick(core, 11.0)) == ["child"]
    effects = finish(core, "child", 1, Outcome.SUCCEEDED, 12.0)
    assert transitions_of(effects)["grandchild"] == (Status.PENDING, "ready")


def test_restore_all_fails_children_of_a_parent_that_did_not_succeed() -> None:
    core = make_core(ready=False)
    items = [
        restored(new_job("child", 2, deps=["gone"], status=Status.BLOCKED)),
        restored(new_job("grandchild", 3, deps=["child"], status=Status.BLOCKED)),
    ]
    core.restore_all(items, {"gone": "cancelled"}, 10.0)
    assert transitions_of(core.take_effects()) == {
        "child": (Status.UPSTREAM_FAILED, "upstream_failed"),
        "grandchild": (Status.UPSTREAM_FAILED, "upstream_failed"),
    }
    assert core.jobs == {}


# ------------------------------------------------------------------------------------------ run_at


def test_future_run_at_is_scheduled_then_pending_at_that_time() -> None:
    core = make_core()
    effects = admit(core, new_job("a", 1, status=Status.PENDING, run_at=30.0), 10.0)
    t = only_transition(effects, "a")
    assert (t.status, t.event, t.next_run_at) == (Status.SCHEDULED, "scheduled", 30.0)
    assert core.position("a") is None
    assert core.next_wakeup() == 30.0
    assert tick(core, 29.9) == Effects()
    effects = tick(core, 30.0)
    assert transitions_of(effects) == {"a": (Status.PENDING, "ready")}
    assert [(s.job_id, s.attempt, s.at) for s in effects.starts] == [("a", 1, 30.0)]


def test_committed_scheduled_job_writes_no_transition_on_admit() -> None:
    core = make_core()
    assert admit(core, new_job("a", 1, status=Status.SCHEDULED, run_at=30.0), 10.0) == Effects()
    assert core.jobs["a"].status is Status.SCHEDULED
    assert core.next_wakeup() == 30.0


def test_run_at_in_the_past_or_now_is_pending_at_once() -> None:
    core = make_core()
    effects = admit(core, new_job("a", 1, status=Status.SCHEDULED, run_at=5.0), 10.0)
    assert transitions_of(effects) == {"a": (Status.PENDING, "ready")}
    effects = admit(core, new_job("b", 2, status=Status.PENDING, created_at=10.0, run_at=10.0), 10.0)
    assert effects.transitions == []
    assert pending_ids(core) == ["a", "b"]


def test_next_wakeup_is_the_earliest_live_due_time() -> None:
    core = make_core(ready=False)
    admit(core, new_job("a", 1, status=Status.SCHEDULED, run_at=50.0))
    admit(core, new_job("b", 2, status=Status.SCHEDULED, run_at=20.0))
    admit(core, new_job("c", 3, status=Status.SCHEDULED, run_at=35.0))
    assert core.next_wakeup() == 20.0
    core.cancel("b", 1.0)
    assert core.next_wakeup() == 35.0
    tick(core, 40.0)
    assert core.next_wakeup() == 50.0
    assert pending_ids(core) == ["c"]
    tick(core, 50.0)
    assert core.next_wakeup() is None


def test_jobs_promoted_in_the_same_tick_are_ordered_by_priority_then_seq() -> None:
    core = make_core(ready=False)
    admit(core, new_job("a", 1, priority=LOW, status=Status.SCHEDULED, run_at=10.0))
    admit(core, new_job("b", 2, priority=HIGH, status=Status.SCHEDULED, run_at=20.0))
    admit(core, new_job("c", 3, priority=LOW, status=Status.SCHEDULED, run_at=15.0))
    tick(core, 20.0)
    assert pending_ids(core) == ["b", "a", "c"]


def test_dependent_job_with_a_future_run_at_does_not_start_before_run_at() -> None:
    core = make_core()
    admit(core, new_job("p", 1))
    admit(core, new_job("c", 2, deps=["p"], status=Status.BLOCKED, run_at=100.0))
    tick(core, 0.0)
    t = only_transition(finish(core, "p", 1, Outcome.SUCCEEDED, 1.0), "c")
    assert (t.status, t.event, t.next_run_at) == (Status.SCHEDULED, "scheduled", 100.0)
    assert started(tick(core, 1.0)) == []
    assert core.next_wakeup() == 100.0
    assert started(tick(core, 100.0)) == ["c"]


# ------------------------------------------------------------------------------------------ bookkeeping


def test_counts_reflect_live_jobs_by_status() -> None:
    core = make_core(capacity=Resources(1, 4096))
    run_one(core, new_job("r", 1))
    admit(core, new_job("p", 2))
    admit(core, new_job("b", 3, deps=["r"], status=Status.BLOCKED))
    admit(core, new_job("s", 4, status=Status.SCHEDULED, run_at=9.0))
    assert core.counts() == {"blocked": 1, "pending": 1, "scheduled": 1, "running": 1}
    assert core.free == Resources(0, 4096 - 128)


def test_take_effects_hands_over_and_resets() -> None:
    core = make_core()
    core.admit(new_job("a", 1, run_at=5.0), {}, 0.0)
    assert core.take_effects()
    assert core.take_effects() == Effects()
    assert not core.take_effects()


def test_lazily_cleaned_heaps_stay_proportional_to_the_live_jobs() -> None:
    core = make_core(ready=False)
    for seq in range(1, 20_001):  # admitted then cancelled: each leaves a stale heap entry behind
        admit(core, new_job(f"p{seq}", seq))
        admit(core, new_job(f"s{seq}", seq + 100_000, status=Status.SCHEDULED, run_at=1e9))
        core.cancel(f"p{seq}", 0.0)
        core.cancel(f"s{seq}", 0.0)
        core.take_effects()
    assert core.jobs == {}
    assert len(core._pending_since) <= 1024 + 1
    assert len(core._timers) <= 1024 + 1
    assert core.oldest_pending_since() is None
    assert core.next_wakeup() is None


def test_a_kill_decided_while_no_supervisor_is_connected_is_asked_again_at_its_hello() -> None:
    core = make_core()
    run_one(core, new_job("r", 1))
    core.supervisor_lost()
    assert core.cancel("r", 1.0) == "cancel_requested"
    assert [(k.job_id, k.outcome) for k in core.take_effects().kills] == [("r", Outcome.CANCELLED)]  # lost
    core.supervisor_ready_with([("r", 1)], 2.0)
    assert [(k.job_id, k.attempt, k.outcome) for k in core.take_effects().kills] == [("r", 1, Outcome.CANCELLED)]
    core.supervisor_ready_with([("r", 1)], 3.0)  # and at every later Hello while it still runs
    assert [k.job_id for k in core.take_effects().kills] == ["r"]


# ----------------------------------------------------------------------------- starts never delivered


def test_a_start_this_supervisor_never_received_goes_back_in_line_uncharged() -> None:
    """The scheduler committed a start and stopped (or lost the link) before sending it: the same
    supervisor, reconnecting, does not own it. It never ran, so it is not a crash and costs no attempt."""
    core = make_core(ready=False)
    core.supervisor_ready_with([], 0.0, "sup-1")
    admit(core, new_job("a", 1, retry=RetryPolicy(max_attempts=1, jitter=0.0)))
    effects = tick(core, 1.0)
    assert [(s.job_id, s.dispatched_to) for s in effects.starts] == [("a", "sup-1")]
    core.supervisor_lost()
    core.supervisor_ready_with([], 2.0, "sup-1")
    effects = core.take_effects()
    assert [(c.job_id, c.outcome) for c in effects.closes] == [("a", Outcome.INTERRUPTED)]
    assert effects.closes[0].error == "never reached a worker: its start was not delivered"
    assert core.jobs["a"].status is Status.PENDING
    assert core.jobs["a"].charged == 0  # max_attempts 1, and it may still run
    assert started(tick(core, 3.0)) == ["a"]


def test_a_start_sent_to_a_supervisor_since_replaced_is_a_crash() -> None:
    core = make_core(ready=False)
    core.supervisor_ready_with([], 0.0, "sup-1")
    admit(core, new_job("a", 1))
    tick(core, 1.0)
    core.supervisor_lost()
    core.supervisor_ready_with([], 2.0, "sup-2")  # a new supervisor process: its workers died with the old one
    effects = core.take_effects()
    assert [(c.job_id, c.outcome) for c in effects.closes] == [("a", Outcome.CRASHED)]


def test_a_restored_running_job_remembers_where_its_start_went() -> None:
    core = make_core(ready=False)
    running = new_job("a", 1, status=Status.RUNNING)
    core.restore(Restored(running, 1, 1, None, None, 0.5, "sup-1"), {}, 1.0)
    core.supervisor_ready_with([], 2.0, "sup-1")
    assert [(c.job_id, c.outcome) for c in core.take_effects().closes] == [("a", Outcome.INTERRUPTED)]
