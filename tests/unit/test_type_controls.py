"""Per-type controls: the pure TypeControls module, and the scheduler core enforcing it in dispatch
(pause holds jobs in place, max_running, the start-rate bucket, backfill past a held job). Fake clock."""

from __future__ import annotations

import pytest

from service.model import Outcome, Resources, Status
from service.scheduler.core import Restored, SchedulerCore
from service.scheduler.type_controls import PAUSED, TypeControls
from tests.unit.test_scheduler_core import admit, finish, make_core, new_job, started, tick


def control(
    core: SchedulerCore,
    job_type: str,
    now: float,
    *,
    paused: bool = False,
    max_running: int | None = None,
    rate: float | None = None,
) -> None:
    core.controls.set(job_type, paused=paused, max_running=max_running, max_starts_per_second=rate, now=now)


# ----------------------------------------------------------------------------------------- the module


def test_a_type_without_controls_is_always_admitted() -> None:
    controls = TypeControls()
    for _ in range(100):
        assert controls.admits("email", 0.0) is None
        controls.started("email", 0.0)
    assert controls.running("email") == 100


def test_pause_and_resume() -> None:
    controls = TypeControls()
    controls.set("email", paused=True, max_running=None, max_starts_per_second=None, now=0.0)
    assert controls.admits("email", 0.0) == PAUSED
    assert controls.admits("report", 0.0) is None
    controls.set("email", paused=False, max_running=None, max_starts_per_second=None, now=1.0)
    assert controls.admits("email", 1.0) is None


def test_max_running_counts_attempts_that_were_running_before_it_was_set() -> None:
    controls = TypeControls()
    controls.started("email", 0.0)
    controls.adopt("email")  # a running attempt found at a rebuild
    controls.set("email", paused=False, max_running=2, max_starts_per_second=None, now=1.0)
    assert controls.admits("email", 1.0) == "type at max_running (2 of 2 running)"
    controls.ended("email")
    assert controls.admits("email", 1.0) is None


def test_the_bucket_holds_one_seconds_worth_and_refills_continuously() -> None:
    controls = TypeControls()
    controls.set("email", paused=False, max_running=None, max_starts_per_second=4.0, now=10.0)
    for _ in range(4):  # a full bucket: one second's worth
        assert controls.admits("email", 10.0) is None
        controls.started("email", 10.0)
    assert controls.admits("email", 10.0) == "type start rate limit (max_starts_per_second 4)"
    assert controls.next_wakeup() == pytest.approx(10.25)
    assert controls.admits("email", 10.25) is None


def test_a_slow_rate_still_allows_one_start_at_a_time() -> None:
    controls = TypeControls()
    controls.set("email", paused=False, max_running=None, max_starts_per_second=0.5, now=0.0)
    assert controls.admits("email", 0.0) is None
    controls.started("email", 0.0)
    assert controls.admits("email", 1.9) is not None
    assert controls.admits("email", 2.0) is None


def test_due_answers_once_per_change_and_per_refill() -> None:
    controls = TypeControls()
    assert not controls.due(0.0)
    controls.set("email", paused=False, max_running=None, max_starts_per_second=1.0, now=0.0)
    assert controls.due(0.0)
    assert not controls.due(0.0)
    controls.started("email", 0.0)
    assert controls.admits("email", 0.5) is not None  # held: someone waits for the token at 1.0
    assert not controls.due(0.9)
    assert controls.due(1.0)
    assert not controls.due(1.0)


# ----------------------------------------------------------------------------------- in the scheduler


def test_a_paused_types_jobs_wait_in_place_and_start_in_their_original_order_on_resume() -> None:
    core = make_core(Resources(1, 4096))  # one at a time: the start order is the queue order
    control(core, "email", 0.0, paused=True)
    for i in range(4):
        admit(core, new_job(f"e{i}", i, job_type="email"), now=float(i))
    assert started(tick(core, 5.0)) == []
    explained = core.explain("e0", 5.0)
    assert explained is not None
    assert explained["type_control"] == PAUSED
    assert explained["reason"].startswith("type paused")
    assert explained["position_in_queue"] == 0  # it kept its place
    control(core, "email", 6.0, paused=False)
    order = []
    now = 6.0
    while len(order) < 4:
        (start,) = tick(core, now).starts
        order.append(start.job_id)
        now += 1.0
        finish(core, start.job_id, 1, Outcome.SUCCEEDED, now)
    assert order == ["e0", "e1", "e2", "e3"]


def test_a_running_job_of_a_paused_type_finishes() -> None:
    core = make_core()
    admit(core, new_job("e", 1, job_type="email"))
    assert started(tick(core, 0.0)) == ["e"]
    control(core, "email", 1.0, paused=True)
    effects = finish(core, "e", 1, Outcome.SUCCEEDED, 2.0)
    assert [t.status for t in effects.transitions] == [Status.SUCCEEDED]
    assert not effects.kills


def test_max_running_is_never_exceeded_under_a_burst() -> None:
    core = make_core()  # 8 CPU: without the control, 8 would run at once
    control(core, "email", 0.0, max_running=3)
    for i in range(40):
        admit(core, new_job(f"e{i}", i, job_type="email"))
    running: list[str] = []
    most = 0
    now = 0.0
    done = 0
    while done < 40:
        running += started(tick(core, now))
        most = max(most, len(running))
        assert sum(1 for j in core.running.values() if j.type == "email") <= 3
        now += 1.0
        finish(core, running.pop(0), 1, Outcome.SUCCEEDED, now)
        done += 1
    assert most == 3


def test_other_types_fill_the_node_beside_a_type_at_its_max_running() -> None:
    core = make_core()
    control(core, "email", 0.0, max_running=1)
    for i in range(3):
        admit(core, new_job(f"e{i}", i, job_type="email"))
    for i in range(3):
        admit(core, new_job(f"r{i}", 10 + i, job_type="report"))
    assert started(tick(core, 0.0)) == ["e0", "r0", "r1", "r2"]


def test_a_job_held_by_its_type_never_becomes_the_head_that_blocks_backfill() -> None:
    core = make_core()  # 8 CPU
    admit(core, new_job("long", 1, cpu=6, job_type="report"))  # no timeout: its end is unknown
    assert started(tick(core, 0.0)) == ["long"]
    control(core, "email", 1.0, paused=True)
    admit(core, new_job("held", 2, cpu=4, priority=3, job_type="email"), now=1.0)
    admit(core, new_job("small", 3, cpu=2, job_type="report"), now=1.0)
    # Unpaused, `held` (critical, 4 CPU) would be the head with a reservation at infinity, and `small`
    # (no timeout) could not be backfilled past it. Paused, it is passed over: `small` starts in order.
    effects = tick(core, 1.0)
    assert started(effects) == ["small"]
    assert not effects.starts[0].backfilled
    assert core.reservation is None
    assert core.position("held") == 0


def test_backfill_behind_a_real_head_skips_held_jobs_and_starts_the_rest() -> None:
    core = make_core()  # 8 CPU
    admit(core, new_job("r", 1, cpu=6, timeout=10.0, job_type="report"))
    assert started(tick(core, 0.0)) == ["r"]
    control(core, "email", 0.0, paused=True)
    admit(core, new_job("head", 2, cpu=8, priority=3, job_type="report"))  # waits for r: the head
    admit(core, new_job("e", 3, cpu=1, timeout=1.0, job_type="email"))  # would backfill, but paused
    admit(core, new_job("q", 4, cpu=1, timeout=1.0, job_type="report"))  # backfills
    effects = tick(core, 0.0)
    assert started(effects) == ["q"]
    assert effects.starts[0].backfilled
    assert core.reservation is not None
    assert core.reservation.job_id == "head"


def test_the_start_rate_holds_over_every_window_on_the_schedulers_clock() -> None:
    core = make_core()
    rate = 4.0
    control(core, "email", 0.0, rate=rate)
    for i in range(20):
        admit(core, new_job(f"e{i}", i, cpu=0, mem=0, job_type="email"))
    starts: list[float] = []
    now = 0.0
    while len(starts) < 20:
        starts += [s.at for s in tick(core, now).starts]
        wake = core.controls.next_wakeup()
        assert wake is not None or len(starts) == 20
        now = wake if wake is not None else now
    burst = max(1.0, rate)
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            assert j - i + 1 <= burst + rate * (starts[j] - starts[i]) + 1e-6
    assert starts[-1] == pytest.approx((20 - burst) / rate)  # and no slower than the rate


def test_a_restored_running_attempt_counts_against_max_running() -> None:
    core = make_core(ready=False)
    core.restore(Restored(new_job("old", 1, job_type="email", status=Status.RUNNING), 1, 1, None, None, 0.0), {}, 0.0)
    core.supervisor_ready_with([("old", 1)], 0.0)
    control(core, "email", 0.0, max_running=1)
    admit(core, new_job("new", 2, job_type="email"))
    assert started(tick(core, 1.0)) == []
    finish(core, "old", 1, Outcome.SUCCEEDED, 2.0)
    assert started(tick(core, 2.0)) == ["new"]


def test_resume_is_noticed_by_the_next_tick_although_nothing_else_changed() -> None:
    core = make_core()
    control(core, "email", 0.0, paused=True)
    admit(core, new_job("e", 1, job_type="email"))
    assert started(tick(core, 0.0)) == []
    assert started(tick(core, 1.0)) == []  # nothing changed: the pass is skipped
    control(core, "email", 2.0, paused=False)
    assert started(tick(core, 2.0)) == ["e"]
