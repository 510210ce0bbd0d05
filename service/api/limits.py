"""Request rate limits: one token bucket per caller and class of request, in the API process.

A caller is its API key (key id) when keys are required, else its client address. Submissions
(`POST /jobs`, `POST /jobs/batch`) and every other guarded request have separate budgets, each off unless
set (TASKQ_RATE_LIMIT_SUBMIT, TASKQ_RATE_LIMIT_REQUESTS). Beyond its budget a request is answered 429
with `Retry-After`, before it reaches any route: nothing is read, written or queued for it.

The buckets live in memory, per API process: a limit bounds what one caller can make one node do,
which is the resource it protects. Probes and the scrape target (`OPEN` routes) are not limited.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from service.errors import TooManyRequests
from service.settings import Rate

SUBMIT = "submit"
REQUESTS = "requests"
_SETTING = {SUBMIT: "TASKQ_RATE_LIMIT_SUBMIT", REQUESTS: "TASKQ_RATE_LIMIT_REQUESTS"}
_WHAT = {SUBMIT: "submissions", REQUESTS: "requests"}
MAX_CALLERS = 100_000  # buckets kept; the least recently seen goes first (a flood of addresses)


class Limiter:
    """Token buckets by (caller, kind). `check` spends one token or raises `TooManyRequests`."""

    def __init__(
        self,
        rates: dict[str, Rate | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = MAX_CALLERS,
    ) -> None:
        self.rates = rates
        self.clock = clock
        self.max_callers = max_callers
        self._buckets: OrderedDict[tuple[str, str], list[float]] = OrderedDict()  # [tokens, as of]

    @property
    def active(self) -> bool:
        return any(rate is not None for rate in self.rates.values())

    def check(self, caller: str, kind: str, own: Rate | None = None) -> None:
        """`own`: the caller's own rate (an API key's), else the node's for this kind."""
        rate = own or self.rates.get(kind)
        if rate is None:
            return
        now = self.clock()
        key = (caller, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [float(rate.burst), now]
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(float(rate.burst), bucket[0] + (now - bucket[1]) * rate.per_second)
            bucket[1] = now
        if bucket[0] < 1.0:
            wait = (1.0 - bucket[0]) / rate.per_second
            limit = f"this key's rate_limits.{kind}" if own else _SETTING[kind]
            message = f"exceeds {limit} ({rate.text}); retry in {wait:.2f}s"
            raise TooManyRequests(
                f"{_WHAT[kind]} from this caller: {message}",
                retry_after_seconds=max(1, math.ceil(wait)),  # Retry-After counts whole seconds
                errors=[{"field": f"rate_limits.{kind}" if own else _SETTING[kind], "message": message}],
            )
        bucket[0] -= 1.0
