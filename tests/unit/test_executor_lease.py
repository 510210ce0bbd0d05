"""The executor lease's bookkeeping (`service/supervisor/lease.py`): renewals, lapse, the term check, and the
shared expiry the zygote reads. No clock: every moment is passed in."""

from __future__ import annotations

import math
import os

from hypothesis import given
from hypothesis import strategies as st

from service.supervisor.lease import NO_LEASE, ExecutorLease, SharedExpiry


def test_without_a_lease_nothing_ever_lapses_and_everything_may_start() -> None:
    lease = ExecutorLease()
    assert lease.renew(echo=5.0, lease=0.0) is False  # a single node's answers carry no lease
    for now in (0.0, 1e6, math.inf):
        assert not lease.lapsed(now)
        assert lease.may_start(now)
    assert lease.expires_at is None


def test_a_lease_runs_from_the_echo_not_from_the_answer() -> None:
    lease = ExecutorLease()
    assert lease.renew(echo=100.0, lease=12.0)
    assert lease.expires_at == 112.0
    assert not lease.lapsed(111.999)
    assert lease.may_start(111.999)
    assert lease.lapsed(112.0)
    assert not lease.may_start(112.0)
    assert lease.silence(115.0) == 15.0  # since the stats whose answer was the last word


def test_a_late_answer_never_shortens_the_lease() -> None:
    lease = ExecutorLease()
    assert lease.renew(echo=10.0, lease=12.0)
    assert not lease.renew(echo=9.0, lease=12.0)  # answers the stats sent before: grants less
    assert lease.expires_at == 22.0
    assert lease.renew(echo=11.0, lease=12.0)
    assert lease.expires_at == 23.0


def test_an_answer_without_a_lease_neither_renews_nor_revokes_one() -> None:
    lease = ExecutorLease()
    lease.renew(echo=10.0, lease=12.0)
    assert not lease.renew(echo=20.0, lease=0.0)
    assert lease.expires_at == 22.0
    assert lease.lapsed(22.0)


def test_a_lapsed_lease_comes_back_only_with_an_answer_to_newer_stats() -> None:
    lease = ExecutorLease()
    lease.renew(echo=10.0, lease=2.0)
    assert lease.lapsed(30.0)  # frozen from 11 to 30
    lease.renew(echo=11.0, lease=2.0)  # an answer that waited in the socket all along
    assert lease.lapsed(30.0)
    lease.renew(echo=30.0, lease=2.0)  # to the stats sent after the freeze
    assert not lease.lapsed(30.5)
    assert lease.may_start(30.5)


def test_a_clustered_node_starts_nothing_before_its_first_lease() -> None:
    lease = ExecutorLease(required=True)
    assert not lease.may_start(0.0)
    assert not lease.lapsed(0.0)  # nothing to kill: nothing could start
    lease.renew(echo=1.0, lease=12.0)
    assert lease.may_start(2.0)
    assert not lease.may_start(13.0)


def test_orders_of_an_older_term_are_refused_and_term_zero_only_until_a_leader_has_one() -> None:
    lease = ExecutorLease()
    assert lease.admit(0)
    assert lease.admit(0)  # a single node: always
    assert lease.admit(3)
    assert lease.term == 3
    assert not lease.admit(2)
    assert not lease.admit(0)
    assert lease.admit(3)
    assert lease.admit(4)
    assert not lease.admit(3)
    assert lease.term == 4


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 600)), max_size=30))
def test_the_expiry_is_the_largest_grant_so_far(answers: list[tuple[float, float]]) -> None:
    lease = ExecutorLease()
    for echo, seconds in answers:
        lease.renew(echo, seconds)
    grants = [echo + seconds for echo, seconds in answers if seconds > 0]
    assert lease.expires_at == (max(grants) if grants else None)


def test_the_zygote_reads_what_the_supervisor_wrote() -> None:
    writer, fd = SharedExpiry.create()
    reader = SharedExpiry.attach(os.dup(fd))  # attach closes the descriptor it is given
    try:
        assert reader.read() == NO_LEASE  # a fresh region: no lease
        writer.write(1234.5678)
        assert reader.read() == 1234.5678
        writer.write(math.nan)  # cannot happen; must not read as an expiry
        assert reader.read() == NO_LEASE
    finally:
        reader.close()
        writer.close()
        os.close(fd)
