"""The scheduler core with several executor nodes: placement, per-node capacity, EASY backfill across
nodes (the reservation names a node), and what happens to a node's attempts when it is lost."""

from __future__ import annotations

import math

from service.model import Outcome, Resources, Status
from service.scheduler.core import SchedulerCore
from tests.unit.test_scheduler_core import new_job

AGING = 60.0


def cluster(*nodes: tuple[str, int], now: float = 0.0) -> SchedulerCore:
    core = SchedulerCore(None, AGING, kill_grace=2.0)
    for name, cpu in nodes:
        core.node_ready(name, Resources(cpu, 4096), [], now)
    core.take_effects()
    return core


def started_on(core: SchedulerCore) -> dict[str, str]:
    return {start.job_id: start.node for start in core.take_effects().starts}


def test_jobs_spread_to_the_node_with_the_most_room_and_never_exceed_one() -> None:
    core = cluster(("a", 4), ("b", 4), ("c", 4))
    for i in range(6):
        core.admit(new_job(f"j{i}", i, cpu=2), {}, 0.0)
    core.tick(0.0)
    placed = started_on(core)
    assert sorted(placed.values()) == ["a", "a", "b", "b", "c", "c"]
    assert all(n.used == Resources(4, 256) for n in core.nodes.values())
    core.admit(new_job("j6", 6, cpu=1), {}, 0.0)
    core.tick(0.0)
    assert started_on(core) == {}  # every node is full: it waits, though 12 units run in all


def test_a_job_fits_only_where_one_node_has_the_room_not_in_the_sum_of_free_units() -> None:
    core = cluster(("a", 4), ("b", 4))
    core.admit(new_job("left", 1, cpu=3), {}, 0.0)
    core.admit(new_job("right", 2, cpu=3), {}, 0.0)
    core.tick(0.0)
    assert sorted(started_on(core).values()) == ["a", "b"]
    core.admit(new_job("two", 3, cpu=2), {}, 0.0)  # 2 units free in all, one on each node
    core.tick(0.0)
    assert started_on(core) == {}
    explanation = core.explain("two", 0.0)
    assert explanation is not None
    assert explanation["reservation"]["node"] in {"a", "b"}
    assert "reserved for it on node" in explanation["reason"]


def test_the_reservation_names_the_node_that_frees_up_first_and_backfill_uses_the_others() -> None:
    core = cluster(("a", 4), ("b", 4))
    core.admit(new_job("long", 1, cpu=4, timeout=100.0), {}, 0.0)
    core.admit(new_job("short", 2, cpu=3, timeout=10.0), {}, 0.0)
    core.tick(0.0)
    assert started_on(core) == {"long": "a", "short": "b"}
    core.admit(new_job("head", 3, cpu=4, timeout=5.0), {}, 1.0)
    core.admit(new_job("filler", 4, cpu=1, timeout=1000.0), {}, 1.0)
    core.tick(1.0)
    reservation = core.reservation
    assert reservation is not None
    assert (reservation.job_id, reservation.node, reservation.at) == ("head", "b", 0.0 + 10.0 + 2.0)
    # The filler runs past the reservation and b has nothing left over for it then: not on b. On a it
    # does not fit either (full). So it waits.
    assert started_on(core) == {}


def test_backfill_goes_to_a_node_other_than_the_reserved_one_whatever_its_length() -> None:
    core = cluster(("a", 4), ("b", 2))
    core.admit(new_job("blocker", 1, cpu=3, timeout=50.0), {}, 0.0)
    core.tick(0.0)
    assert started_on(core) == {"blocker": "a"}
    core.admit(new_job("head", 2, cpu=4, timeout=5.0), {}, 1.0)  # only a can ever hold it
    core.admit(new_job("endless", 3, cpu=2, timeout=None), {}, 1.0)  # unknown end: never before a reservation
    core.tick(1.0)
    assert core.reservation is not None
    assert core.reservation.node == "a"
    assert started_on(core) == {"endless": "b"}


def test_a_head_no_node_can_hold_blocks_nothing_and_says_why() -> None:
    core = cluster(("a", 2))
    core.admit(new_job("huge", 1, cpu=8), {}, 0.0)
    core.admit(new_job("small", 2, cpu=1, timeout=10.0), {}, 0.0)
    core.tick(0.0)
    assert started_on(core) == {"small": "a"}
    explanation = core.explain("huge", 0.0)
    assert explanation is not None
    assert "needs more than any node" in explanation["reason"]
    assert core.reservation is not None
    assert core.reservation.node is None
    assert math.isinf(core.reservation.at)


def test_a_lost_node_keeps_its_attempts_until_it_expires_then_they_crash_and_retry_elsewhere() -> None:
    core = cluster(("a", 2), ("b", 2))
    core.admit(new_job("x", 1, cpu=2), {}, 0.0)
    core.admit(new_job("y", 2, cpu=2), {}, 0.0)
    core.tick(0.0)
    placed = started_on(core)
    on_a = next(job for job, node in placed.items() if node == "a")
    on_b = next(job for job, node in placed.items() if node == "b")
    core.node_lost("a")
    core.tick(1.0)
    assert core.jobs[on_a].status is Status.RUNNING  # still held: it may be running, cut off
    effects = core.take_effects()
    assert effects.closes == []
    core.node_expired("a", 10.0)
    effects = core.take_effects()
    assert [(c.job_id, c.outcome) for c in effects.closes] == [(on_a, Outcome.CRASHED)]
    assert "a" not in core.nodes
    assert core.jobs[on_b].status is Status.RUNNING
    core.attempt_finished(on_b, 1, Outcome.SUCCEEDED, None, None, 11.0)
    core.tick(20.0)  # the crashed job's retry delay is over: it runs on the node that is left
    assert started_on(core) == {on_a: "b"}


def test_a_node_that_says_hello_again_keeps_what_it_still_runs_and_loses_the_rest() -> None:
    core = cluster(("a", 4))
    core.admit(new_job("kept", 1, cpu=1), {}, 0.0)
    core.admit(new_job("gone", 2, cpu=1), {}, 0.0)
    core.tick(0.0)
    core.take_effects()
    core.node_lost("a")
    core.node_ready("a", Resources(4, 4096), [("kept", 1)], 1.0, instance="i2")
    effects = core.take_effects()
    assert [(c.job_id, c.outcome) for c in effects.closes] == [("gone", Outcome.CRASHED)]
    assert core.nodes["a"].running == 1
    assert core.nodes["a"].used == Resources(1, 128)


def test_a_draining_node_takes_nothing_new_and_its_kill_names_it() -> None:
    core = cluster(("a", 2), ("b", 2))
    core.admit(new_job("first", 1, cpu=2), {}, 0.0)
    core.tick(0.0)
    node = started_on(core)["first"]
    other = "b" if node == "a" else "a"
    core.node_draining(other)
    core.admit(new_job("second", 2, cpu=2), {}, 1.0)
    core.tick(1.0)
    assert started_on(core) == {}
    core.cancel("first", 2.0)
    assert [(k.job_id, k.node) for k in core.take_effects().kills] == [("first", node)]


def test_a_rebuilt_running_job_counts_on_its_node_before_that_node_says_hello() -> None:
    core = SchedulerCore(None, AGING)
    from service.scheduler.core import Restored

    item = Restored(
        new_job("r", 1, cpu=3, status=Status.RUNNING), 1, 1, None, None, 0.0, dispatched_to="i1", node="far"
    )
    core.restore_all([item], {}, 0.0)
    assert core.nodes["far"].used == Resources(3, 128)
    assert not core.nodes["far"].takes_work
    core.node_ready("far", Resources(4, 4096), [("r", 1)], 1.0, instance="i1")
    assert core.take_effects().closes == []
    assert core.nodes["far"].free == Resources(1, 4096 - 128)
