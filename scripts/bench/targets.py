"""The performance issue's targets, each with its floor and goal, judged against what this run measured."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .common import pct
from .drain import Drain
from .latency import Latency
from .submit_rates import Batches, Concurrent, Sequential


@dataclass
class Target:
    what: str
    measured: str
    floor: str
    goal: str
    floor_met: bool
    goal_met: bool
    how: str  # the generator / source of the figure

    @property
    def verdict(self) -> str:
        if self.goal_met:
            return "**goal met**"
        return "floor met, goal not" if self.floor_met else "**not met**"


def _ge(value: float, bound: float) -> bool:
    return not math.isnan(value) and value >= bound


def _le(value: float, bound: float) -> bool:
    return not math.isnan(value) and value <= bound


def targets(
    seq: Sequential, conc: Concurrent, batches: Batches, drains: dict[str, Drain], latency: Latency
) -> list[Target]:
    out = []
    b = batches.result.rate
    out.append(
        Target(
            f"`POST /jobs/batch`, {batches.result.batch_size}-job batches, durable "
            f"({batches.result.clients} concurrent clients)",
            f"{b:,.0f} jobs/s",
            "≥ 50,000 jobs/s",
            "≥ 100,000 jobs/s",
            _ge(b, 50_000),
            _ge(b, 100_000),
            "raw-socket clients in threads, pre-encoded bodies; jobs counted in PostgreSQL",
        )
    )
    p50 = pct(seq.round_trips_s, 50)
    out.append(
        Target(
            "single `POST /jobs`, one sequential client, round trip p50",
            f"{p50 * 1000:.2f} ms",
            "p50 ≤ 2.5 ms",
            "p50 ≤ 1.5 ms",
            _le(p50, 0.0025),
            _le(p50, 0.0015),
            "raw-socket keep-alive client, `perf_counter_ns`",
        )
    )
    r = conc.load.rate
    out.append(
        Target(
            f"single `POST /jobs`, {conc.load.connections} concurrent clients, jobs that don't run yet",
            f"{r:,.0f} req/s",
            "≥ 3,000 req/s",
            "≥ 5,000 req/s",
            _ge(r, 3000),
            _ge(r, 5000),
            conc.load.generator + "; 2xx responses / duration, rows checked in PostgreSQL",
        )
    )
    for job_type, label, floor, goal in (
        ("quick_task", "end to end, fresh process per job (`quick_task`)", 800, 1000),
        ("tiny_task", "end to end, reused worker (`tiny_task`)", 10_000, 40_000),
    ):
        d = drains.get(job_type)
        t = d.throughput if d else math.nan
        out.append(
            Target(
                f"{label}, {d.jobs if d else 0:,} jobs, duration 0",
                f"{t:,.0f} jobs/s",
                f"≥ {floor:,} jobs/s",
                f"≥ {goal:,} jobs/s",
                _ge(t, floor),
                _ge(t, goal),
                "jobs / (last `jobs.finished_at` − first `attempts.started_at`), PostgreSQL µs timestamps",
            )
        )
    wait = latency.span("created", "started")
    w50, w95 = pct(wait, 50), pct(wait, 95)
    out.append(
        Target(
            "submit → start on an idle node, one at a time",
            f"p50 {w50 * 1000:.2f} ms, p95 {w95 * 1000:.2f} ms",
            "p50 ≤ 2 ms, p95 ≤ 4 ms",
            "p50 ≤ 1 ms",
            _le(w50, 0.002) and _le(w95, 0.004),
            _le(w50, 0.001) and _le(w95, 0.004),
            f"`attempts.started_at − jobs.created_at` (µs, PostgreSQL), {len(wait)} jobs",
        )
    )
    return out
