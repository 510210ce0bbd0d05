"""The scheduler's metrics: the gauges read from its state at each scrape, and the counters and
histograms each committed turn adds to (catalogue: service/telemetry.py)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from service.model import Resources, Status
from service.protocol import SupervisorStats
from service.scheduler.core import Effects, SchedulerCore
from service.scheduler.rows import PRIORITY_NAMES
from service.telemetry import Telemetry

Gauge = Callable[[], Iterable[tuple[float, dict[str, Any]]]]


def gauges(
    core: SchedulerCore,
    terminal_counts: Counter[str],
    restarts: Mapping[str, int],
    supervisor_stats: Mapping[str, SupervisorStats],
) -> dict[str, Gauge]:
    def resources(of: Resources) -> list[tuple[float, dict[str, Any]]]:
        return [(of.cpu_units, {"resource": "cpu_units"}), (of.memory_mb, {"resource": "memory_mb"})]

    def utilization() -> list[tuple[float, dict[str, Any]]]:
        cap, used = core.capacity, core.used
        return [
            (used.cpu_units / cap.cpu_units if cap.cpu_units else 0.0, {"resource": "cpu_units"}),
            (used.memory_mb / cap.memory_mb if cap.memory_mb else 0.0, {"resource": "memory_mb"}),
        ]

    def oldest() -> list[tuple[float, dict[str, Any]]]:
        since = core.oldest_pending_since()
        return [(0.0 if since is None else max(0.0, time.time() - since), {})]

    return {
        "taskq_queue_depth": lambda: [
            (n, {"status": status.value, "priority": PRIORITY_NAMES[level]})
            for (status, level), n in core.depth.items()
        ],
        "taskq_capacity": lambda: resources(core.capacity),
        "taskq_resources_in_use": lambda: resources(core.used),
        "taskq_utilization": utilization,
        "taskq_dlq_size": lambda: [(terminal_counts[Status.FAILED.value], {})],
        "taskq_oldest_waiting_age": oldest,
        "taskq_actor_restarts": lambda: [(n, {"actor": actor}) for actor, n in restarts.items()],
        "taskq_worker_forks": lambda: [(s.forks, {"node": node}) for node, s in supervisor_stats.items()],
        "taskq_spare_workers": lambda: [(s.spares, {"node": node}) for node, s in supervisor_stats.items()],
    }


def measure(telemetry: Telemetry, effects: Effects, terminal_counts: Counter[str]) -> None:
    """A committed turn's starts, ends and retries; and the terminal counts `/stats` reads."""
    record, add = telemetry.record, telemetry.add
    for start in effects.starts:
        priority = PRIORITY_NAMES[start.level]
        add("taskq_jobs_started", type=start.job_type, priority=priority, backfilled=str(start.backfilled).lower())
        record("taskq_wait_time", start.waited, priority=priority)
    for close in effects.closes:
        outcome = close.outcome.value
        add("taskq_jobs_finished", type=close.job_type, priority=PRIORITY_NAMES[close.level], outcome=outcome)
        record("taskq_run_time", close.ran_for, type=close.job_type, outcome=outcome)
    for t in effects.transitions:
        if t.event == "retry_scheduled":
            add("taskq_job_retries", type=t.job_type)
        elif t.status.terminal:
            terminal_counts[t.status.value] += 1
