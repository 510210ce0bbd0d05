"""Micro-benchmark of the pure scheduler core (no I/O) holding 10^3 .. 10^6 waiting jobs."""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from service.model import Outcome, Resources, RetryPolicy, Status
from service.protocol import NewJob
from service.scheduler.core import SchedulerCore

from .common import log

CORE_SIZES = (10**3, 10**4, 10**5, 10**6)
CORE_OPS = 5000  # operations measured per size and kind
CORE_CHUNK = 100  # timed in chunks; between chunks the queue is put back to its size, untimed


@dataclass
class CoreRow:
    n: int
    build_s: float
    rss_per_job: float  # bytes, from the benchmark process's RSS growth while building
    us: dict[str, float]  # operation -> mean microseconds per operation


CORE_OPERATIONS = ("submit", "position", "cancel", "dispatch+complete")
# Fields that some versions of NewJob have and the benchmark does not vary.
_NEW_JOB_EXTRA: dict[str, Any] = {"type": "quick_task"} if "type" in NewJob.__struct_fields__ else {}


class CoreBench:
    """A core holding `n` pending jobs that cannot start: no supervisor is ready, so nothing dispatches."""

    def __init__(self, n: int) -> None:
        # Capacity for exactly one job: once dispatch is enabled, each tick starts exactly the head.
        self.core = SchedulerCore(Resources(1, 64), 60.0, random.Random(1))
        self.policy = RetryPolicy()
        self.rng = random.Random(n)
        self.seq = 0
        self.now = 0.0
        self.live: list[str] = []  # ids of the jobs admitted and not removed, in admission order
        self.index: dict[str, int] = {}

    def new_job(self) -> NewJob:
        self.seq += 1
        self.now += 1e-4
        return NewJob(
            **_NEW_JOB_EXTRA,
            job_id=f"j{self.seq}",
            seq=self.seq,
            priority=self.rng.randrange(4),
            cpu_units=1,
            memory_mb=64,
            depends_on=[],
            status=Status.PENDING,
            created_at=self.now,
            run_at=None,
            timeout_seconds=60.0,
            retry=self.policy,
        )

    def admit_all(self, jobs: Iterable[NewJob]) -> None:
        core, now = self.core, self.now
        for job in jobs:
            core.admit(job, {}, now)
        core.take_effects()

    def track(self, jobs: Iterable[NewJob]) -> None:
        for job in jobs:
            self.index[job.job_id] = len(self.live)
            self.live.append(job.job_id)

    def forget(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            i = self.index.pop(job_id)
            last = self.live.pop()
            if last != job_id:
                self.live[i] = last
                self.index[last] = i

    def random_pending(self, k: int) -> list[str]:
        return self.rng.sample(self.live, k)


def core_benchmark(sizes: Sequence[int]) -> list[CoreRow]:
    """Every size is built first, then measured *interleaved*: each round runs one chunk of every
    operation at every size, so a shared VM that speeds up or slows down during the run (this one varies
    by 2x from minute to minute) moves all sizes alike instead of skewing the ratios between them."""
    me = psutil.Process()
    benches: list[CoreBench] = []
    builds: list[tuple[float, float]] = []
    for n in sizes:
        gc.collect()
        rss0 = me.memory_info().rss
        bench = CoreBench(n)
        start = time.perf_counter()
        for _ in range(n):
            job = bench.new_job()
            bench.core.admit(job, {}, bench.now)
        build_s = time.perf_counter() - start
        assert not bench.core.take_effects(), "admitting pending jobs should produce no effects"
        bench.live = [f"j{i}" for i in range(1, n + 1)]
        bench.index = {job_id: i for i, job_id in enumerate(bench.live)}
        builds.append((build_s, (me.memory_info().rss - rss0) / n))
        benches.append(bench)
        log(f"core n={n}: built in {build_s:.2f}s")
    timings: list[dict[str, list[float]]] = [{op: [] for op in CORE_OPERATIONS} for _ in benches]
    for _ in range(CORE_OPS // CORE_CHUNK):
        for bench, timing in zip(benches, timings, strict=True):
            _queue_round(bench, timing)
    for bench in benches:  # dispatch+complete: enable dispatch; each tick starts the head (only one job fits)
        bench.core.supervisor_ready_with([], bench.now)
        bench.core.take_effects()
    for _ in range(CORE_OPS // CORE_CHUNK):
        for bench, timing in zip(benches, timings, strict=True):
            _dispatch_round(bench, timing)
    rows = []
    for n, bench, timing, (build_s, rss_per_job) in zip(sizes, benches, timings, builds, strict=True):
        assert len(bench.core.queue) == n, (len(bench.core.queue), n)
        us = {op: statistics.median(chunks) / CORE_CHUNK * 1e6 for op, chunks in timing.items()}
        rows.append(CoreRow(n, build_s, rss_per_job, us))
        log(f"core n={n}: " + ", ".join(f"{k} {v:.2f}us" for k, v in us.items()))
    benches.clear()
    gc.collect()
    return rows


def _queue_round(bench: CoreBench, timings: dict[str, list[float]]) -> None:
    """One timed chunk each of submit, position and cancel; the queue is put back to its size untimed."""
    core = bench.core
    # submit: admit CORE_CHUNK more, then cancel them again (untimed) to keep the size at n
    jobs = [bench.new_job() for _ in range(CORE_CHUNK)]
    now = bench.now
    t0 = time.perf_counter()
    for job in jobs:
        core.admit(job, {}, now)
    core.take_effects()
    timings["submit"].append(time.perf_counter() - t0)
    for job in jobs:
        core.cancel(job.job_id, now)
    core.take_effects()

    # position of random pending jobs
    ids = bench.random_pending(CORE_CHUNK)
    t0 = time.perf_counter()
    for job_id in ids:
        core.position(job_id)
    timings["position"].append(time.perf_counter() - t0)

    # cancel random pending jobs, then admit as many new ones (untimed)
    ids = bench.random_pending(CORE_CHUNK)
    t0 = time.perf_counter()
    for job_id in ids:
        core.cancel(job_id, now)
    core.take_effects()
    timings["cancel"].append(time.perf_counter() - t0)
    bench.forget(ids)
    refill = [bench.new_job() for _ in range(CORE_CHUNK)]
    bench.admit_all(refill)
    bench.track(refill)


def _dispatch_round(bench: CoreBench, timings: dict[str, list[float]]) -> None:
    """One timed chunk of dispatch+complete: each tick starts the head, which then succeeds."""
    core, now = bench.core, bench.now
    done: list[str] = []
    t0 = time.perf_counter()
    for _ in range(CORE_CHUNK):
        core.tick(now)
        (start_effect,) = core.take_effects().starts
        core.attempt_finished(start_effect.job_id, start_effect.attempt, Outcome.SUCCEEDED, None, None, now)
        core.take_effects()
        done.append(start_effect.job_id)
    timings["dispatch+complete"].append(time.perf_counter() - t0)
    bench.forget(done)
    refill = [bench.new_job() for _ in range(CORE_CHUNK)]  # admit never dispatches; tick does
    bench.admit_all(refill)
    bench.track(refill)
