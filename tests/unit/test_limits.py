"""Token buckets: a caller spends one token per request, and tokens come back at the configured rate."""

from __future__ import annotations

import pytest

from service.api.limits import REQUESTS, SUBMIT, Limiter
from service.errors import TooManyRequests
from service.settings import Rate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("raw", "per_second", "burst"),
    [("100/s", 100.0, 100), ("6000/m", 100.0, 100), ("10/h", 10 / 3600, 1), ("2.5/s", 2.5, 3), ("5/s:50", 5.0, 50)],
)
def test_a_rate_is_an_amount_per_unit_with_an_optional_burst(raw: str, per_second: float, burst: int) -> None:
    rate = Rate.parse(raw)
    assert (rate.per_second, rate.burst) == (pytest.approx(per_second), burst)


# A rate of 400 nines is an infinite float: refused, not an OverflowError (a 500 on POST /keys; found by
# schemathesis).
@pytest.mark.parametrize("raw", ["100", "/s", "0/s", "10/d", "10/s:0", "-1/s", "1e3/s", "9" * 400 + "/s"])
def test_what_is_not_a_rate_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):  # the message repeats what was given
        Rate.parse(raw)


def test_a_caller_may_spend_its_burst_then_waits_for_tokens_at_the_rate() -> None:
    clock = Clock()
    limiter = Limiter({SUBMIT: Rate.parse("2/s:4"), REQUESTS: None}, clock=clock)
    for _ in range(4):
        limiter.check("key a", SUBMIT)
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("key a", SUBMIT)
    assert refused.value.retry_after_seconds == 1  # half a second to the next token, rounded up
    assert refused.value.errors[0]["field"] == "TASKQ_RATE_LIMIT_SUBMIT"
    assert "2/s:4" in refused.value.detail
    limiter.check("key b", SUBMIT)  # another caller has its own bucket
    limiter.check("key a", REQUESTS)  # and another kind of request is not limited here
    clock.now += 0.5
    limiter.check("key a", SUBMIT)  # one token came back
    with pytest.raises(TooManyRequests):
        limiter.check("key a", SUBMIT)
    clock.now += 100
    for _ in range(4):  # never more than the burst, however long the pause
        limiter.check("key a", SUBMIT)
    with pytest.raises(TooManyRequests):
        limiter.check("key a", SUBMIT)


def test_a_slow_rate_says_how_long_to_wait() -> None:
    limiter = Limiter({REQUESTS: Rate.parse("1/m")}, clock=Clock())
    limiter.check("address 10.0.0.1", REQUESTS)
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("address 10.0.0.1", REQUESTS)
    assert refused.value.retry_after_seconds == 60


def test_the_number_of_buckets_is_bounded() -> None:
    limiter = Limiter({REQUESTS: Rate.parse("1/h")}, clock=Clock(), max_callers=3)
    for caller in ("a", "b", "c", "d"):
        limiter.check(caller, REQUESTS)
    assert len(limiter._buckets) == 3
    limiter.check("a", REQUESTS)  # "a" was forgotten first: a fresh bucket (a flood cannot exhaust memory)


def test_no_rate_set_means_no_limit() -> None:
    limiter = Limiter({SUBMIT: None, REQUESTS: None}, clock=Clock())
    assert not limiter.active
    for _ in range(1000):
        limiter.check("a", SUBMIT)
