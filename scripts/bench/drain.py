"""End-to-end drains: 10,000 zero-duration jobs sent as 1000-job batches to an idle node with far more
capacity than the jobs need, then run to completion. Times are PostgreSQL's microsecond timestamps."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from .common import log, pct, peak_concurrency
from .cpu import CpuWindow
from .database import US, Database, PgServer
from .http_load import batch_load, build_request
from .service_proc import ServiceProcess

DRAIN_CAPACITY = {"cpu_units": 64, "memory_mb": 65536}
DRAIN_JOBS = 10_000
DRAIN_BATCH = 1000
DRAIN_NEEDS = {"cpu_units": 1, "memory_mb": 1}
DRAIN_TYPES = ("quick_task", "tiny_task")


@dataclass
class Drain:
    job_type: str
    jobs: int
    span_s: float = 0.0  # first attempt start → last job finish
    total_s: float = 0.0  # first batch sent → last job finish
    submit_s: float = 0.0  # first batch sent → last batch answered
    cpu: dict[str, float] = field(default_factory=dict)
    worker_pids: int = 0  # distinct worker pids over all attempts
    attempts: int = 0
    peak_running: int = 0
    run_s: list[float] = field(default_factory=list)  # attempt start → attempt finish
    wait_s: list[float] = field(default_factory=list)  # created → attempt start
    machine_busy: float = 0.0  # share of the machine's CPU busy during the drain, anyone's processes

    @property
    def throughput(self) -> float:
        return self.jobs / self.span_s if self.span_s > 0 else 0.0


def drain(svc: ServiceProcess, db: Database, pg: PgServer, job_type: str) -> Drain:
    prefix = f"drain-{job_type}-"
    db.settle()
    requests = []
    for b in range(DRAIN_JOBS // DRAIN_BATCH):
        jobs = [
            {
                "job_id": f"{prefix}{b * DRAIN_BATCH + i:05d}",
                "type": job_type,
                "payload": {"duration_seconds": 0},
                "resource_requirements": DRAIN_NEEDS,
            }
            for i in range(DRAIN_BATCH)
        ]
        requests.append(build_request("POST", "/jobs/batch", svc.port, json.dumps({"jobs": jobs}).encode()))
    log(f"drain {job_type}: {DRAIN_JOBS} jobs in batches of {DRAIN_BATCH}")
    out = Drain(job_type, DRAIN_JOBS)
    window = CpuWindow(svc, pg).start()
    t0 = time.time()
    sent = batch_load(svc.port, requests, batch_size=DRAIN_BATCH, clients=1)
    if sent.failures:
        raise RuntimeError(f"drain batches failed: {sent.failures[:2]}")
    out.submit_s = sent.elapsed_s

    def progress() -> bool:
        done, bad = db.fetch(
            """SELECT count(*) FILTER (WHERE status = 'succeeded'),
                      count(*) FILTER (WHERE status IN ('failed', 'cancelled', 'upstream_failed'))
               FROM jobs WHERE type = $1""",
            job_type,
        )[0]
        if bad:
            raise RuntimeError(f"{bad} {job_type} drain jobs ended badly")
        return bool(done >= DRAIN_JOBS)

    deadline = time.monotonic() + 240
    while not progress():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job_type}: {DRAIN_JOBS} jobs did not succeed within 240 s")
        time.sleep(0.5)
    out.cpu = window.stop()
    out.machine_busy = window.machine_busy_s / window.machine_total_s if window.machine_total_s else 0.0
    rows = db.fetch(
        f"""SELECT {US.format("j.created_at")} AS created, {US.format("a.started_at")} AS started,
                   {US.format("a.finished_at")} AS attempt_finished, {US.format("j.finished_at")} AS finished,
                   a.worker_pid
            FROM jobs j JOIN attempts a ON a.job_id = j.job_id
            WHERE j.type = $1""",
        job_type,
    )
    out.attempts = len(rows)
    starts = [r["started"] for r in rows]
    finishes = [r["finished"] for r in rows]
    out.span_s = (max(finishes) - min(starts)) / 1e6
    out.total_s = max(finishes) / 1e6 - t0
    out.worker_pids = len({r["worker_pid"] for r in rows})
    out.peak_running = peak_concurrency((r["started"], r["attempt_finished"]) for r in rows)
    out.run_s = [(r["attempt_finished"] - r["started"]) / 1e6 for r in rows]
    out.wait_s = [(r["started"] - r["created"]) / 1e6 for r in rows]
    log(
        f"drain {job_type}: {out.throughput:.0f} jobs/s over {out.span_s:.2f}s; "
        f"run p50 {pct(out.run_s, 50) * 1000:.1f} ms, peak {out.peak_running} running"
    )
    return out
