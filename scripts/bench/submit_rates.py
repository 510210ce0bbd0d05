"""The durable submit path without execution: jobs with `run_at` far in the future, so that nothing runs
while submissions are measured. Every count is checked against the rows PostgreSQL holds."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from .common import FAR_FUTURE, log
from .cpu import CpuWindow
from .database import Database, PgServer
from .http_load import (
    BatchResult,
    LoadResult,
    RawHttp,
    batch_load,
    build_request,
    socket_load,
    wrk_available,
    wrk_load,
)
from .service_proc import ServiceProcess

LATER_JOB = {
    "type": "quick_task",
    "payload": {"duration_seconds": 0},
    "resource_requirements": {"cpu_units": 1, "memory_mb": 64},
    "run_at": FAR_FUTURE,
}
SEQUENTIAL_REQUESTS = 1000
SEQUENTIAL_WARMUP = 50
CONCURRENT_CONNECTIONS = 64
CONCURRENT_SECONDS = 5.0
BATCH_SIZE = 1000
BATCH_CLIENTS = 3
BATCH_SECONDS = 6.0
BATCH_MAX = 60  # pre-encoded batch requests available to the clients (60,000 jobs)


@dataclass
class Sequential:
    round_trips_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    rows: int = 0  # jobs the database gained
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.round_trips_s) / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class Concurrent:
    load: LoadResult
    rows: int  # jobs the database gained
    wrk_missing: bool
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class Batches:
    result: BatchResult
    rows: int
    cpu: dict[str, float] = field(default_factory=dict)


def sequential_round_trip(svc: ServiceProcess, db: Database, pg: PgServer) -> Sequential:
    """One client, one keep-alive connection, one `POST /jobs` at a time, timed with perf_counter_ns."""
    log(f"submit: {SEQUENTIAL_REQUESTS} sequential POST /jobs on one raw-socket connection")
    raw = build_request("POST", "/jobs", svc.port, json.dumps(LATER_JOB).encode())
    out = Sequential()
    with RawHttp(svc.port) as http:
        for _ in range(SEQUENTIAL_WARMUP):
            http.request(raw)
        before = db.jobs()
        window = CpuWindow(svc, pg).start()
        for _ in range(SEQUENTIAL_REQUESTS):
            status, body, _, _, rt_ns = http.timed(raw)
            if status != 201:
                raise RuntimeError(f"POST /jobs -> {status}: {body[:300]!r}")
            out.round_trips_s.append(rt_ns / 1e9)
        out.cpu = window.stop()
    out.elapsed_s = sum(out.round_trips_s)
    out.rows = db.jobs() - before
    if out.rows != SEQUENTIAL_REQUESTS:
        raise RuntimeError(f"{SEQUENTIAL_REQUESTS} answered 201 but the jobs table gained {out.rows} rows")
    return out


def concurrent_singles(svc: ServiceProcess, db: Database, pg: PgServer) -> Concurrent:
    """`CONCURRENT_CONNECTIONS` keep-alive connections POSTing back to back for `CONCURRENT_SECONDS`: wrk if
    it is installed, else the raw-socket generator of this process (which then competes for the CPUs)."""
    body = json.dumps(LATER_JOB).encode()
    wrk = wrk_available()
    url = f"{svc.base_url}/jobs"

    def run(seconds: float) -> LoadResult:
        if wrk:
            return wrk_load(url, body, connections=CONCURRENT_CONNECTIONS, threads=2, duration_s=seconds)
        raw = build_request("POST", "/jobs", svc.port, body)
        return socket_load(svc.port, raw, connections=CONCURRENT_CONNECTIONS, duration_s=seconds)

    if not wrk:
        log("submit: WARNING wrk not found on PATH; falling back to the raw-socket generator in this process")
    log(f"submit: {CONCURRENT_CONNECTIONS} concurrent clients POST /jobs for {CONCURRENT_SECONDS:g}s ({wrk or 'raw'})")
    run(1.0)  # warm-up: connections, caches, the API's pools
    time.sleep(0.5)  # the warm-up's requests in flight when it stopped are committed before the count
    before = db.jobs()
    window = CpuWindow(svc, pg).start()
    load = run(CONCURRENT_SECONDS)
    cpu = window.stop()
    time.sleep(0.5)
    rows = db.jobs() - before
    if load.other or load.errors:
        raise RuntimeError(f"{load.other} non-2xx responses and {load.errors} socket errors under load")
    # Requests still in flight when the generator stopped may have been committed without being counted.
    if not load.ok <= rows <= load.ok + CONCURRENT_CONNECTIONS:
        raise RuntimeError(f"{load.ok} answered 2xx but the jobs table gained {rows} rows")
    return Concurrent(load, rows, wrk is None, cpu)


def batches(svc: ServiceProcess, db: Database, pg: PgServer) -> Batches:
    """`BATCH_CLIENTS` clients, each on its own connection, sending pre-encoded 1000-job batches back to back
    for `BATCH_SECONDS`."""
    body = json.dumps({"jobs": [LATER_JOB] * BATCH_SIZE}).encode()
    raw = build_request("POST", "/jobs/batch", svc.port, body)
    batch_load(svc.port, [raw] * BATCH_CLIENTS, batch_size=BATCH_SIZE, clients=BATCH_CLIENTS)  # warm-up
    log(f"submit: {BATCH_CLIENTS} clients POST /jobs/batch of {BATCH_SIZE} for {BATCH_SECONDS:g}s")
    before = db.jobs()
    window = CpuWindow(svc, pg).start()
    result = batch_load(
        svc.port, [raw] * BATCH_MAX, batch_size=BATCH_SIZE, clients=BATCH_CLIENTS, duration_s=BATCH_SECONDS
    )
    cpu = window.stop()
    rows = db.jobs() - before
    if result.failures:
        raise RuntimeError(f"{len(result.failures)} batches failed, e.g. {result.failures[:2]}")
    if rows != result.accepted_jobs:
        raise RuntimeError(f"{result.accepted_jobs} jobs answered 201 but the jobs table gained {rows} rows")
    return Batches(result, rows, cpu)
