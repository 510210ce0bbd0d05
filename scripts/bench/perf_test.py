"""The specification's Performance Test: 1000 jobs sent as single `POST /jobs` by 64 concurrent clients to the
specification's node and run to completion; the process tree's CPU and memory; query latency as the jobs
table grows (`grown()`, after the submit measurements have added their scheduled jobs)."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .common import PRIORITIES, log, peak_concurrency, wait_until
from .database import US, Database, PgServer
from .service_proc import Api, ServiceProcess

PERF_JOBS = 1000
PERF_CONCURRENCY = 64
PERF_SAMPLE = 200  # jobs read one by one (GET /jobs/{id}) for their attempts
QUERY_REPEATS = {"get": 200, "list": 100, "stats": 50}


@dataclass
class Perf:
    accept_s: float = math.nan
    submit_wall0: float = math.nan  # time.time() when the first submission was sent
    submit_lat: list[float] = field(default_factory=list)
    submit_errors: list[str] = field(default_factory=list)
    client_cpu_s: float = math.nan
    e2e_s: float = math.nan  # first submit to the last job's finished_at
    drain_s: float = math.nan  # last accept to the last job's finished_at
    wait_all: list[float] = field(default_factory=list)  # started_at - created_at, all jobs (list pages)
    wait_by_priority: dict[str, list[float]] = field(default_factory=dict)
    run_all: list[float] = field(default_factory=list)  # finished_at - started_at
    start_span_s: float = math.nan
    peak_running: int = 0
    mean_running: float = math.nan  # sum of run times / (last finish - first start)
    sample_wait: list[float] = field(default_factory=list)  # attempts[0].started_at - created_at, sample
    sample_attempts: int = 0
    rss: dict[str, dict[str, int]] = field(default_factory=dict)
    db_size: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_wall_s: float = math.nan
    queries: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    jobs_at: dict[str, int] = field(default_factory=dict)  # query stage -> rows in the jobs table
    scheduled_at_large: int = 0  # jobs still scheduled (run_at far ahead) when the table was large
    sample: list[str] = field(default_factory=list)  # the succeeded jobs GET /jobs/{id} reads


async def submit_concurrently(base_url: str, bodies: list[dict[str, Any]], concurrency: int) -> Perf:
    """`concurrency` requests in flight, each connection with its own `httpx.AsyncClient`: one shared pool of
    many connections costs the client far more CPU per request, and would measure httpx instead of the service."""
    perf = Perf()
    todo = iter(bodies)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) for _ in range(concurrency)]
    try:
        # Open the connections first so that the measurement is not of TCP handshakes.
        await asyncio.gather(*(client.get("/health/live") for client in clients))

        async def worker(client: httpx.AsyncClient) -> None:
            for body in todo:
                t0 = time.perf_counter()
                try:
                    response = await client.post("/jobs", json=body)
                except httpx.HTTPError as exc:
                    perf.submit_errors.append(f"{body['job_id']}: {type(exc).__name__}")
                    continue
                perf.submit_lat.append(time.perf_counter() - t0)
                if response.status_code != 201:
                    perf.submit_errors.append(f"{body['job_id']}: {response.status_code} {response.text[:200]}")

        cpu0, t0, perf.submit_wall0 = time.process_time(), time.perf_counter(), time.time()
        await asyncio.gather(*(worker(client) for client in clients))
        perf.accept_s = time.perf_counter() - t0
        perf.client_cpu_s = time.process_time() - cpu0
    finally:
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)
    return perf


def timed_gets(http: httpx.Client, paths: Sequence[str]) -> list[float]:
    for path in paths[:10]:  # warm-up
        http.get(path)
    out = []
    for path in paths:
        t0 = time.perf_counter()
        response = http.get(path)
        out.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} -> {response.status_code}: {response.text[:200]}")
    return out


def measure_queries(http: httpx.Client, sample_ids: Sequence[str]) -> dict[str, list[float]]:
    n_get, n_list, n_stats = QUERY_REPEATS["get"], QUERY_REPEATS["list"], QUERY_REPEATS["stats"]
    return {
        "GET /jobs/{id}": timed_gets(
            http, [f"/jobs/{j}" for j in itertools.islice(itertools.cycle(sample_ids), n_get)]
        ),
        "GET /jobs?status=succeeded&limit=50": timed_gets(http, ["/jobs?status=succeeded&limit=50"] * n_list),
        "GET /jobs?limit=50": timed_gets(http, ["/jobs?limit=50"] * n_list),
        "GET /stats": timed_gets(http, ["/stats"] * n_stats),
    }


def performance_test(svc: ServiceProcess, db: Database, pg: PgServer, api: Api) -> Perf:
    rng = random.Random(42)
    bodies: list[dict[str, Any]] = [
        {
            "job_id": f"perf-{i:04d}",
            "type": "quick_task",
            "priority": rng.choice(PRIORITIES),
            "payload": {"duration_seconds": 0},
            "resource_requirements": {"cpu_units": 1, "memory_mb": 64},
        }
        for i in range(PERF_JOBS)
    ]
    rss_idle, size_empty = svc.rss(), db.size()
    succeeded_before = api.stats()["jobs_by_status"]["succeeded"]
    cpu0, pg_cpu0 = svc.cpu(), pg.cpu_seconds()
    t0 = time.monotonic()
    log(f"performance: submitting {PERF_JOBS} jobs with {PERF_CONCURRENCY} concurrent requests")
    perf = asyncio.run(submit_concurrently(svc.base_url, bodies, PERF_CONCURRENCY))
    wall0 = perf.submit_wall0
    accepted_wall = wall0 + perf.accept_s
    if perf.submit_errors:
        raise RuntimeError(f"{len(perf.submit_errors)} submissions failed, e.g. {perf.submit_errors[:3]}")
    perf.rss["idle (after start)"], perf.db_size["idle (after start)"] = rss_idle, size_empty

    def all_succeeded() -> bool:
        counts = api.stats()["jobs_by_status"]
        bad = {k: counts[k] for k in ("failed", "cancelled", "upstream_failed") if counts.get(k)}
        if bad:
            raise RuntimeError(f"performance jobs ended badly: {bad}")
        return bool(counts["succeeded"] >= succeeded_before + PERF_JOBS)

    wait_until(all_succeeded, timeout=180, interval=0.1, what=f"{PERF_JOBS} jobs to succeed")
    cpu1, pg_cpu1 = svc.cpu(), pg.cpu_seconds()
    perf.cpu_wall_s = time.monotonic() - t0
    perf.cpu = {role: cpu1[role] - cpu0.get(role, 0.0) for role in cpu1}
    if pg_cpu0 is not None and pg_cpu1 is not None:
        perf.cpu["postgresql"] = pg_cpu1 - pg_cpu0
    stage = f"after {PERF_JOBS} jobs succeeded"
    perf.rss[stage], perf.db_size[stage] = svc.rss(), db.size()

    # Every job's timestamps from the list (two pages of 500), then a sample read one by one for attempts.
    # Every job's timestamps in microseconds, as PostgreSQL holds them (the API rounds to milliseconds).
    rows = db.fetch(
        f"""SELECT j.priority::text AS priority, {US.format("j.created_at")} AS created,
                   {US.format("j.started_at")} AS started, {US.format("j.finished_at")} AS finished,
                   (SELECT count(*) FROM attempts a WHERE a.job_id = j.job_id) AS attempts,
                   (SELECT {US.format("min(a.started_at)")} FROM attempts a WHERE a.job_id = j.job_id) AS first_start
            FROM jobs j WHERE j.job_id LIKE 'perf-%' AND j.status = 'succeeded'"""
    )
    if len(rows) != PERF_JOBS:
        raise RuntimeError(f"found {len(rows)} succeeded perf jobs, expected {PERF_JOBS}")
    starts = [r["started"] / 1e6 for r in rows]
    finishes = [r["finished"] / 1e6 for r in rows]
    perf.wait_all = [s - r["created"] / 1e6 for s, r in zip(starts, rows, strict=True)]
    perf.run_all = [f - s for s, f in zip(starts, finishes, strict=True)]
    for r, wait in zip(rows, perf.wait_all, strict=True):
        perf.wait_by_priority.setdefault(r["priority"], []).append(wait)
    perf.e2e_s = max(finishes) - wall0
    perf.drain_s = max(finishes) - accepted_wall
    perf.start_span_s = max(starts) - min(starts)
    perf.peak_running = peak_concurrency(zip(starts, finishes, strict=True))
    perf.mean_running = sum(perf.run_all) / (max(finishes) - min(starts))
    perf.sample_attempts = sum(int(r["attempts"]) for r in rows)
    perf.sample_wait = [(r["first_start"] - r["created"]) / 1e6 for r in rows]
    sample = rng.sample([b["job_id"] for b in bodies], PERF_SAMPLE)  # for GET /jobs/{id}

    perf.jobs_at["small"] = sum(api.stats()["jobs_by_status"].values())
    log(f"performance: query latency at {perf.jobs_at['small']} jobs")
    perf.queries["small"] = measure_queries(api.http, sample)
    perf.sample = sample

    return perf


def grown(svc: ServiceProcess, db: Database, api: Api, perf: Perf, stage: str) -> None:
    """Memory and query latency again, once the table has grown."""
    counts = api.stats()["jobs_by_status"]
    perf.scheduled_at_large = int(counts["scheduled"])
    perf.jobs_at["large"] = sum(counts.values())
    perf.rss[stage], perf.db_size[stage] = svc.rss(), db.size()
    log(f"performance: query latency at {perf.jobs_at['large']} jobs")
    perf.queries["large"] = measure_queries(api.http, perf.sample)
