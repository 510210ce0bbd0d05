"""The benchmark's pure helpers: percentiles and the failover summary (no benchmark is run here)."""

from __future__ import annotations

import math

from scripts.bench.cluster import summary
from scripts.bench.common import pct


def test_pct_interpolates_between_closest_ranks() -> None:
    assert pct([3.0, 1.0, 2.0], 50) == 2.0
    assert pct([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert pct([1.0, 2.0], 100) == 2.0
    assert math.isnan(pct([], 50))


def test_summary_leaves_out_rounds_that_did_not_get_there() -> None:
    assert summary([2.4, math.nan, 2.0, 3.1]) == (2.4, 3.1, 3.0)
    p50, top, n = summary([math.nan])
    assert math.isnan(p50)
    assert math.isnan(top)
    assert n == 0
