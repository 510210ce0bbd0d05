"""One run's measurements, as the report's sections read them; small formatting helpers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from .cluster import ClusterBench
from .core_bench import CoreRow
from .drain import Drain
from .latency import Latency
from .peers import PeerRun
from .perf_test import Perf
from .scenarios import Scenario
from .service_proc import ServiceProcess
from .submit_rates import Batches, Concurrent, Sequential
from .targets import Target

Add = Callable[[str], None]


@dataclass
class Run:
    started: datetime
    core: list[CoreRow]
    pg_version: str
    pg_kind: str
    svc: ServiceProcess  # the specification's node: latency, submission, performance test, scenarios
    drain_svc: ServiceProcess  # the large node of the drains
    latency: Latency
    sequential: Sequential
    concurrent: Concurrent
    batches: Batches
    perf: Perf
    drains: dict[str, Drain]
    scenarios: list[Scenario]
    targets: list[Target]
    peers: PeerRun
    duration_s: float = math.nan
    load_before: float = math.nan  # 1-minute load average when the run started
    load_after: float = math.nan
    notes: list[str] = field(default_factory=list)
    cluster: ClusterBench | None = None  # three nodes on one database, one node, the failover (section 9)
    cluster_note: str = ""  # why it was not measured


def sup(n: int) -> str:
    return f"10^{round(math.log10(n))}" if n > 0 and 10 ** round(math.log10(n)) == n else str(n)


def us(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1e6:,.0f} µs"
