"""Regenerates `evaluation_results.md` from real runs (`make bench`). Nothing in that file is written by hand.

Stages, in order:

1. a micro-benchmark of the pure scheduler core (no I/O) with 10^3 .. 10^6 waiting jobs;
2. a PostgreSQL: a fresh database on TASKQ_DATABASE_URL's server if set, else an embedded one (pgserver) in a
   temporary directory; migrated with dbmate;
3. the real service (`python -m service serve`) on a free port;
4. the specification's Performance Test: 1000 jobs over HTTP, then 10,000 more by batch, with latencies,
   throughput, CPU and memory of the process tree, and query latency as the table grows;
5. the specification's five test scenarios and the circular-dependency bonus, driven over HTTP;
6. the report, whose conclusions are computed from the numbers above.

The service and the database are stopped in `finally`, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

from service.model import Outcome, Resources, RetryPolicy, Status
from service.protocol import NewJob
from service.scheduler.core import BACKFILL_DEPTH, SchedulerCore

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "evaluation_results.md"
T = TypeVar("T")

PRIORITIES = ("critical", "high", "normal", "low")
CAPACITY = {"cpu_units": 8, "memory_mb": 4096}  # the specification's node ("8 CPU units and 4096 MB")

CORE_SIZES = (10**3, 10**4, 10**5, 10**6)
DRAIN_JOBS = 2000  # jobs per end-to-end drain, one batch
CORE_OPS = 5000  # operations measured per size and kind
CORE_CHUNK = 100  # timed in chunks; between chunks the queue is put back to its size, untimed

PERF_JOBS = 1000
PERF_CONCURRENCY = 64
PERF_SAMPLE = 200  # jobs read one by one (GET /jobs/{id}) for their attempts
BULK_BATCHES = 10
BULK_BATCH_SIZE = 1000
FAR_FUTURE = "2099-01-01T00:00:00Z"
QUERY_REPEATS = {"get": 200, "list": 100, "stats": 50}


# ------------------------------------------------------------------------------------------------- helpers


def pct(values: Sequence[float], p: float) -> float:
    """Percentile with linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def wait_until(check: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str) -> T:
    """Polls `check` until it returns something truthy; raises TimeoutError with what it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def log(message: str) -> None:
    print(f"[evaluate {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------- 1. scheduler core


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


# ------------------------------------------------------------------------------------------- 2. database


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def sql(url: str, statement: str) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(url, timeout=30)
        try:
            return await conn.fetchval(statement, timeout=60)
        finally:
            await conn.close()

    return asyncio.run(run())


class Database:
    def __init__(self) -> None:
        self.external = os.environ.get("TASKQ_DATABASE_URL") or None
        self.embedded: Any = None
        self.tempdir: str | None = None
        self.admin_url = ""
        self.name = f"taskq_eval_{uuid.uuid4().hex[:10]}"
        self.created = False
        self.url = ""
        self.version = ""

    def start(self) -> str:
        from service.store.migrations import migrate

        if self.external:
            self.admin_url = self.external
        else:
            from service.embedded_pg import EmbeddedPostgres

            self.tempdir = tempfile.mkdtemp(prefix="taskq-eval-pg-")
            self.embedded = EmbeddedPostgres(self.tempdir)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.admin_url = self.embedded.start(database="postgres")
        try:
            sql(self.admin_url, f'CREATE DATABASE "{self.name}"')
        except (OSError, asyncpg.PostgresError) as exc:
            where = "TASKQ_DATABASE_URL" if self.external else "the embedded PostgreSQL"
            raise RuntimeError(f"cannot create database {self.name} on {where}: {exc}") from exc
        self.created = True
        self.url = with_database(self.admin_url, self.name)
        migrate(self.url)
        self.version = str(sql(self.url, "SHOW server_version"))
        return self.url

    def size(self) -> int:
        return int(sql(self.url, "SELECT pg_database_size(current_database())"))

    def cpu_seconds(self) -> float | None:
        """CPU used by the embedded server's processes (postmaster, live backends and reaped ones)."""
        if self.embedded is None:
            return None
        try:
            pid = int((Path(self.embedded.pgdata) / "postmaster.pid").read_text().split()[0])
            postmaster = psutil.Process(pid)
            t = postmaster.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
            for child in postmaster.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
            return total
        except (OSError, ValueError, psutil.Error):
            return None

    def stop(self) -> None:
        if self.external and self.created:
            with contextlib.suppress(Exception):
                sql(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}"')
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
        if self.tempdir is not None:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None


# -------------------------------------------------------------------------------------------- 3. service


class ServiceProcess:
    """`python -m service serve` in its own session, stopped by SIGTERM to its pid."""

    ROLES = ("root", "scheduler", "supervisor", "api", "workers", "other")

    def __init__(self, database_url: str, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_") or k == "TASKQ_MIGRATIONS_DIR"}
        self.env = {
            **inherited,
            "TASKQ_DATABASE_URL": database_url,
            "TASKQ_HOST": "127.0.0.1",
            "TASKQ_PORT": str(self.port),
            "TASKQ_CPU_UNITS": str(CAPACITY["cpu_units"]),
            "TASKQ_MEMORY_MB": str(CAPACITY["memory_mb"]),
            "TASKQ_LOG_LEVEL": "INFO",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s = math.nan
        self.exit_code: int | None = None
        self.stop_s = math.nan
        self.stop_note = ""

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as out:
            t0 = time.monotonic()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with httpx.Client(base_url=self.base_url, timeout=2.0) as http:

            def ready() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"taskq serve exited with code {self.process.returncode} before it was ready; "
                        f"log tail:\n{self.log_tail()}"
                    )
                try:
                    return http.get("/health/ready").status_code == 200
                except httpx.TransportError:
                    return False

            try:
                wait_until(ready, timeout=timeout, interval=0.1, what="GET /health/ready to answer 200")
            except TimeoutError as exc:
                raise RuntimeError(f"{exc}; log tail:\n{self.log_tail()}") from None
        self.ready_s = time.monotonic() - t0

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return "(no log)"

    def tree(self) -> list[psutil.Process]:
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def role(self, proc: psutil.Process) -> str:
        assert self.process is not None
        if proc.pid == self.process.pid:
            return "root"
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            return "other"
        if cmd.startswith("taskq: worker"):
            return "workers"
        for role in ("scheduler", "supervisor", "api"):
            if cmd.startswith(f"taskq: {role}"):
                return role
        return "other"

    def rss(self) -> dict[str, int]:
        """RSS by role, summed over the process tree (pages shared after fork are counted in each process)."""
        out = dict.fromkeys(self.ROLES, 0)
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                out[self.role(proc)] += proc.memory_info().rss
        out["total"] = sum(out[r] for r in self.ROLES)
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds by role; reaped workers are in the supervisor's children times."""
        out = dict.fromkeys(self.ROLES, 0.0)
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                role = self.role(proc)
                t = proc.cpu_times()
                out[role] += t.user + t.system
                out["workers" if role == "supervisor" else role] += t.children_user + t.children_system
        return out

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is None or self.exit_code is not None:
            return
        descendants: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            descendants = self.tree()[1:]
        t0 = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop_note = f"did not exit within {timeout:.0f}s of SIGTERM; killed with SIGKILL"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.exit_code = self.process.wait(10)
        self.stop_s = time.monotonic() - t0
        left = [p for p in descendants if _alive(p)]
        if left:
            with contextlib.suppress(BaseException):
                wait_until(lambda: not [p for p in left if _alive(p)], timeout=10, what="descendants to exit")
            left = [p for p in left if _alive(p)]
        if left:
            self.stop_note += f" {len(left)} descendant process(es) outlived the root and were killed"
            for p in left:
                with contextlib.suppress(psutil.Error):
                    p.kill()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Api:
    """A small synchronous client for the scenarios and the query measurements."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def submit(self, job: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/jobs", json=job)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST /jobs {job.get('job_id')} -> {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/jobs/{job_id}")
        if response.status_code != 200:
            raise RuntimeError(f"GET /jobs/{job_id} -> {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/stats").json()
        return body

    def logs(self, job_id: str) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = self.http.get(f"/jobs/{job_id}/logs").json()
        return body

    def wait_for(self, job_ids: Sequence[str], statuses: set[str], timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}

        def check() -> bool:
            for job_id in job_ids:
                if job_id not in seen or seen[job_id]["status"] not in statuses:
                    seen[job_id] = self.job(job_id)
            return all(seen[j]["status"] in statuses for j in job_ids)

        try:
            wait_until(check, timeout=timeout, interval=0.05, what=f"{', '.join(job_ids)} to become {statuses}")
        except TimeoutError as exc:
            last = ", ".join(f"{j}: {seen[j]['status']}" for j in seen)
            raise TimeoutError(f"{exc}; last seen: {last}") from None
        return seen


TERMINAL = {"succeeded", "failed", "cancelled", "upstream_failed"}


# ----------------------------------------------------------------------------------- 4. performance test


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
    batch_s: list[float] = field(default_factory=list)
    idle_accept_s: float = math.nan  # the same single submissions, of jobs that do not run (run_at far ahead)
    idle_submit_lat: list[float] = field(default_factory=list)
    idle_client_cpu_s: float = math.nan
    jobs_at: dict[str, int] = field(default_factory=dict)  # query stage -> rows in the jobs table
    scheduled_after_batches: int = 0
    one_at_a_time_start: list[float] = field(default_factory=list)  # idle node: started_at - created_at
    one_at_a_time_post: list[float] = field(default_factory=list)  # idle node: POST /jobs round trip


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


def peak_concurrency(intervals: Iterable[tuple[float, float]]) -> int:
    events = sorted(itertools.chain.from_iterable(((a, 1), (b, -1)) for a, b in intervals), key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def one_at_a_time(api: Api, perf: Perf, jobs: int = 200) -> None:
    """Submit → start on an idle node: one job at a time, each started by the time its POST returns
    (the 201 carries started_at). The gap between submissions only keeps the node idle."""
    for _ in range(jobs):
        started = time.perf_counter()
        job = api.submit({"type": "quick_task", "payload": {"duration_seconds": 0}})
        perf.one_at_a_time_post.append(time.perf_counter() - started)
        if job.get("started_at"):
            perf.one_at_a_time_start.append(ts(job["started_at"]) - ts(job["created_at"]))
        time.sleep(0.01)


def succeeded_jobs(api: Api, *, prefix: str, **filters: str) -> list[dict[str, Any]]:
    """Every succeeded job whose id starts with `prefix`, from `GET /jobs` pages of 500 (keyset cursor)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"status": "succeeded", "limit": 500, **filters}
    while True:
        page = api.http.get("/jobs", params=params).json()
        items += [item for item in page["items"] if item["job_id"].startswith(prefix)]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


def performance_test(svc: ServiceProcess, db: Database, api: Api) -> Perf:
    rng = random.Random(42)
    bodies = [
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
    cpu0, pg_cpu0 = svc.cpu(), db.cpu_seconds()
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
    cpu1, pg_cpu1 = svc.cpu(), db.cpu_seconds()
    perf.cpu_wall_s = time.monotonic() - t0
    perf.cpu = {role: cpu1[role] - cpu0.get(role, 0.0) for role in cpu1}
    if pg_cpu0 is not None and pg_cpu1 is not None:
        perf.cpu["postgresql"] = pg_cpu1 - pg_cpu0
    stage = f"after {PERF_JOBS} jobs succeeded"
    perf.rss[stage], perf.db_size[stage] = svc.rss(), db.size()

    # Every job's timestamps from the list (two pages of 500), then a sample read one by one for attempts.
    items = succeeded_jobs(api, prefix="perf-")
    if len(items) != PERF_JOBS:
        raise RuntimeError(f"listed {len(items)} succeeded perf jobs, expected {PERF_JOBS}")
    starts = [ts(i["started_at"]) for i in items]
    finishes = [ts(i["finished_at"]) for i in items]
    perf.wait_all = [s - ts(i["created_at"]) for s, i in zip(starts, items, strict=True)]
    perf.run_all = [f - s for s, f in zip(starts, finishes, strict=True)]
    for item, wait in zip(items, perf.wait_all, strict=True):
        perf.wait_by_priority.setdefault(item["priority"], []).append(wait)
    perf.e2e_s = max(finishes) - wall0
    perf.drain_s = max(finishes) - accepted_wall
    perf.start_span_s = max(starts) - min(starts)
    perf.peak_running = peak_concurrency(zip(starts, finishes, strict=True))
    perf.mean_running = sum(perf.run_all) / (max(finishes) - min(starts))
    sample = rng.sample([b["job_id"] for b in bodies], PERF_SAMPLE)
    for job_id in sample:
        job = api.job(job_id)
        perf.sample_attempts += len(job["attempts"])
        perf.sample_wait.append(ts(job["attempts"][0]["started_at"]) - ts(job["created_at"]))

    perf.jobs_at["small"] = sum(api.stats()["jobs_by_status"].values())
    log(f"performance: query latency at {perf.jobs_at['small']} jobs")
    perf.queries["small"] = measure_queries(api.http, sample)

    log(f"performance: {PERF_JOBS} more single submissions of jobs that do not run yet (run_at {FAR_FUTURE})")
    later = [{**body, "job_id": f"later-{i:04d}", "run_at": FAR_FUTURE} for i, body in enumerate(bodies)]
    idle = asyncio.run(submit_concurrently(svc.base_url, later, PERF_CONCURRENCY))
    if idle.submit_errors:
        raise RuntimeError(f"{len(idle.submit_errors)} submissions failed, e.g. {idle.submit_errors[:3]}")
    perf.idle_accept_s, perf.idle_submit_lat, perf.idle_client_cpu_s = idle.accept_s, idle.submit_lat, idle.client_cpu_s
    stage = f"after +{PERF_JOBS} scheduled (single POSTs)"
    perf.rss[stage], perf.db_size[stage] = svc.rss(), db.size()

    log(f"performance: {BULK_BATCHES} batches of {BULK_BATCH_SIZE} scheduled jobs (run_at {FAR_FUTURE})")
    for b in range(BULK_BATCHES):
        batch = [
            {
                "job_id": f"bulk-{b:02d}-{i:04d}",
                "type": "quick_task",
                "priority": PRIORITIES[i % 4],
                "payload": {"duration_seconds": 0},
                "resource_requirements": {"cpu_units": 1, "memory_mb": 64},
                "run_at": FAR_FUTURE,
            }
            for i in range(BULK_BATCH_SIZE)
        ]
        t1 = time.perf_counter()
        response = api.http.post("/jobs/batch", json={"jobs": batch}, timeout=120)
        perf.batch_s.append(time.perf_counter() - t1)
        if response.status_code != 201:
            raise RuntimeError(f"POST /jobs/batch -> {response.status_code}: {response.text[:300]}")
        statuses = {j["status"] for j in response.json()["jobs"]}
        if statuses != {"scheduled"}:
            raise RuntimeError(f"batch jobs answered with statuses {statuses}, expected only 'scheduled'")
    counts = api.stats()["jobs_by_status"]
    perf.scheduled_after_batches = int(counts["scheduled"])
    perf.jobs_at["large"] = sum(counts.values())
    stage = f"after +{BULK_BATCHES * BULK_BATCH_SIZE} scheduled (batches)"
    perf.rss[stage], perf.db_size[stage] = svc.rss(), db.size()

    log(f"performance: query latency at {perf.jobs_at['large']} jobs")
    perf.queries["large"] = measure_queries(api.http, sample)
    return perf


@dataclass
class Drain:
    """A batch of tiny jobs drained end to end: a fresh process per job, or reused workers."""

    job_type: str
    jobs: int
    span_s: float = math.nan  # first start -> last finish
    total_s: float = math.nan  # batch sent -> last finish
    cpu: dict[str, float] = field(default_factory=dict)
    workers: int = 0  # distinct worker pids, from a sample of attempts
    sample: int = 0


def drain_test(svc: ServiceProcess, db: Database, api: Api, job_type: str) -> Drain:
    """DRAIN_JOBS jobs of `job_type` (`duration_seconds: 0`) in one batch, on an otherwise idle node (after a
    VACUUM ANALYZE and a CHECKPOINT), then wait until all have succeeded. Throughput is jobs / (last finish
    - first start), from the service's own timestamps; CPU is per process role over the whole drain."""
    drain = Drain(job_type, DRAIN_JOBS)
    prefix = f"drain-{job_type}-"
    # The same starting point for both: no dead rows from the previous run left for autovacuum to clean
    # up in the middle of this one, and no checkpoint debt.
    sql(db.url, "VACUUM ANALYZE")
    sql(db.url, "CHECKPOINT")
    batch = [
        {"job_id": f"{prefix}{i:05d}", "type": job_type, "payload": {"duration_seconds": 0}} for i in range(DRAIN_JOBS)
    ]
    before = api.stats()["jobs_by_status"]["succeeded"]
    cpu0, pg0 = svc.cpu(), db.cpu_seconds()
    t0 = time.time()
    response = api.http.post("/jobs/batch", json={"jobs": batch}, timeout=120)
    if response.status_code != 201:
        raise RuntimeError(f"POST /jobs/batch -> {response.status_code}: {response.text[:300]}")
    wait_until(
        lambda: api.stats()["jobs_by_status"]["succeeded"] >= before + DRAIN_JOBS,
        timeout=300,
        interval=0.1,
        what=f"{DRAIN_JOBS} {job_type} jobs to succeed",
    )
    cpu1, pg1 = svc.cpu(), db.cpu_seconds()
    drain.cpu = {role: cpu1[role] - cpu0.get(role, 0.0) for role in cpu1}
    if pg0 is not None and pg1 is not None:
        drain.cpu["postgresql"] = pg1 - pg0
    items = succeeded_jobs(api, prefix=prefix, type=job_type)
    starts = [ts(i["started_at"]) for i in items]
    finishes = [ts(i["finished_at"]) for i in items]
    drain.span_s = max(finishes) - min(starts)
    drain.total_s = max(finishes) - t0
    sample = random.Random(7).sample([i["job_id"] for i in items], 100)
    drain.sample = len(sample)
    drain.workers = len({api.job(job_id)["attempts"][0]["worker_pid"] for job_id in sample})
    log(f"drain {job_type}: {DRAIN_JOBS / drain.span_s:.0f} jobs/s over {drain.span_s:.2f}s")
    return drain


# ------------------------------------------------------------------------------------------- 5. scenarios


@dataclass
class Scenario:
    name: str
    expected: str
    observed: str = ""
    ok: bool = False
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, what: str, passed: bool) -> bool:
        self.checks.append((what, passed))
        return passed


def interval(job: dict[str, Any], attempt: int = -1) -> tuple[float, float]:
    a = job["attempts"][attempt]
    return ts(a["started_at"]), ts(a["finished_at"])


def overlap_s(a: dict[str, Any], b: dict[str, Any]) -> float:
    (a0, a1), (b0, b1) = interval(a), interval(b)
    return min(a1, b1) - max(a0, b0)


def peak_usage(jobs: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """Peak concurrent cpu and memory from the attempts' intervals (ends before starts at equal times)."""
    events = []
    for job in jobs:
        need = job["resource_requirements"]
        for a in job["attempts"]:
            events.append((ts(a["started_at"]), 1, need["cpu_units"], need["memory_mb"]))
            events.append((ts(a["finished_at"]), 0, -need["cpu_units"], -need["memory_mb"]))
    cpu = memory = peak_cpu = peak_memory = 0
    for _, _, d_cpu, d_memory in sorted(events):
        cpu, memory = cpu + d_cpu, memory + d_memory
        peak_cpu, peak_memory = max(peak_cpu, cpu), max(peak_memory, memory)
    return peak_cpu, peak_memory


def first_start_log_id(api: Api, job_id: str) -> int:
    return min(line["id"] for line in api.logs(job_id) if line["event"] == "started")


def scenario_1(api: Api) -> Scenario:
    s = Scenario(
        "1. Basic job flow",
        "critical runs first; jobs start in priority order; resource usage tracked",
    )
    jobs = [
        ("s1_welcome", "send_email", "normal", {"to": "user@example.com", "template": "welcome"}, 1, 128),
        ("s1_alert", "send_email", "critical", {"to": "vip@example.com", "template": "alert"}, 1, 128),
        ("s1_daily_summary", "generate_report", "low", {"report_type": "daily_summary", "date": "2024-01-15"}, 4, 2048),
    ]
    holder = api.submit(
        {
            "job_id": "s1_hold_node",
            "type": "long_running",
            "payload": {"duration_seconds": 1.0},
            "resource_requirements": CAPACITY,
        }
    )
    api.wait_for([holder["job_id"]], {"running"}, timeout=10)
    in_use_held = api.stats()["resources_in_use"]
    answers = [
        api.submit(
            {
                "job_id": job_id,
                "type": type_,
                "priority": prio,
                "payload": payload,
                "resource_requirements": {"cpu_units": cpu, "memory_mb": mem},
            }
        )
        for job_id, type_, prio, payload, cpu, mem in jobs
    ]
    ids = [j[0] for j in jobs]
    done = api.wait_for([*ids, "s1_hold_node"], TERMINAL, timeout=30)
    in_use_after = api.stats()["resources_in_use"]
    order = sorted(ids, key=lambda j: first_start_log_id(api, j))
    prio = {j[0]: j[2] for j in jobs}
    positions = [a["position_in_queue"] for a in answers]
    s.check("all succeeded with one attempt", all(done[j]["status"] == "succeeded" for j in ids))
    s.check("start order critical, normal, low", order == ["s1_alert", "s1_welcome", "s1_daily_summary"])
    s.check("positions at submission 0, 0, 2", positions == [0, 0, 2])
    s.check("in use 8/4096 while held, 0/0 after", in_use_held == CAPACITY and in_use_after == {k: 0 for k in CAPACITY})
    final = ", ".join(f"{prio[j]}={done[j]['status']} ({done[j]['attempt_count']} attempt)" for j in ids)
    s.observed = (
        f"node held by an 8-CPU job; submitted normal, critical, low → status "
        f"{'/'.join(a['status'] for a in answers)}, position_in_queue {positions}; "
        f"started {' → '.join(prio[j] for j in order)} (by `started` log order); "
        f"/stats in use {in_use_held['cpu_units']}/{in_use_held['memory_mb']} while held, "
        f"{in_use_after['cpu_units']}/{in_use_after['memory_mb']} after; "
        f"final {final}"
    )
    return s


SCENARIO_2 = [
    {
        "job_id": "fetch_data_001",
        "type": "data_fetch",
        "priority": "high",
        "payload": {"source": "market_api", "symbols": ["AAPL", "GOOGL"], "duration_seconds": 0.3},
        "resource_requirements": {"cpu_units": 2, "memory_mb": 512},
    },
    {
        "job_id": "process_data_001",
        "type": "data_processing",
        "priority": "high",
        "payload": {"operation": "calculate_indicators", "duration_seconds": 0.2},
        "depends_on": ["fetch_data_001"],
        "resource_requirements": {"cpu_units": 4, "memory_mb": 1024},
    },
    {
        "job_id": "generate_report_001",
        "type": "report_generation",
        "priority": "normal",
        "payload": {"format": "pdf", "duration_seconds": 0.1},
        "depends_on": ["process_data_001"],
        "resource_requirements": {"cpu_units": 2, "memory_mb": 512},
    },
]


def scenario_2(api: Api) -> Scenario:
    s = Scenario(
        "2. Simple dependencies",
        "dependency order regardless of priority; blocked vs ready status; failed parent → dependents never run",
    )
    answers = [api.submit(job) for job in SCENARIO_2]
    child_status = api.job("process_data_001")["status"]
    ids = [j["job_id"] for j in SCENARIO_2]
    done = api.wait_for(ids, TERMINAL, timeout=30)
    gaps = []
    for parent, child in itertools.pairwise(ids):
        gaps.append(interval(done[child])[0] - interval(done[parent])[1])
    s.check("all succeeded", all(done[j]["status"] == "succeeded" for j in ids))
    s.check("each child started after its parent finished", all(g >= 0 for g in gaps))
    s.check("children blocked at submission", [a["status"] for a in answers][1:] == ["blocked", "blocked"])

    # The same chain with a parent that fails for good: its dependents must never run.
    failing = [
        {
            **SCENARIO_2[0],
            "job_id": "fetch_data_002",
            "payload": {"fail_times": 9},
            "retry_config": {"max_attempts": 1},
        },
        {**SCENARIO_2[1], "job_id": "process_data_002", "depends_on": ["fetch_data_002"]},
        {**SCENARIO_2[2], "job_id": "generate_report_002", "depends_on": ["process_data_002"]},
    ]
    for job in failing:
        api.submit(job)
    fail_ids = [j["job_id"] for j in failing]
    failed = api.wait_for(fail_ids, TERMINAL, timeout=30)
    fail_statuses = [failed[j]["status"] for j in fail_ids]
    never_ran = all(failed[j]["attempts"] == [] for j in fail_ids[1:])
    s.check(
        "failing chain: failed, upstream_failed, upstream_failed", fail_statuses == ["failed", *["upstream_failed"] * 2]
    )
    s.check("dependents of the failed parent never ran", never_ran)
    s.observed = (
        f"statuses at submission {', '.join(a['status'] for a in answers)} (GET process_data_001 right after: "
        f"{child_status}); all {', '.join(sorted({done[j]['status'] for j in ids}))}; each child started "
        f"{', '.join(f'{g * 1000:.0f}' for g in gaps)} ms after its parent finished. Chain with a parent that "
        f"fails (max_attempts 1): {', '.join(fail_statuses)}; dependents' attempts: "
        f"{'none' if never_ran else 'some ran'}"
    )
    return s


SCENARIO_3 = [
    {"job_id": "fetch_prices", "type": "data_fetch", "priority": "high"},
    {"job_id": "fetch_volumes", "type": "data_fetch", "priority": "high"},
    {
        "job_id": "analyze_market",
        "type": "analysis",
        "depends_on": ["fetch_prices", "fetch_volumes"],
        "priority": "critical",
    },
    {"job_id": "trader_report", "type": "report", "depends_on": ["analyze_market"], "priority": "high"},
    {"job_id": "risk_report", "type": "report", "depends_on": ["analyze_market"], "priority": "normal"},
    {
        "job_id": "send_notifications",
        "type": "notification",
        "depends_on": ["trader_report", "risk_report"],
        "priority": "high",
    },
]
S3_DURATION = 0.3


def scenario_3(api: Api) -> Scenario:
    s = Scenario("3. Complex dependency graph", "parallel branches run in parallel; every edge respected")
    batch = [{**job, "payload": {"duration_seconds": S3_DURATION}} for job in reversed(SCENARIO_3)]
    response = api.http.post("/jobs/batch", json={"jobs": batch})
    if response.status_code != 201:
        raise RuntimeError(f"POST /jobs/batch -> {response.status_code}: {response.text[:300]}")
    ids = [j["job_id"] for j in SCENARIO_3]
    done = api.wait_for(ids, TERMINAL, timeout=30)
    violations = [
        (dep, job["job_id"])
        for job in SCENARIO_3
        for dep in job.get("depends_on", [])
        if interval(done[dep])[1] > interval(done[job["job_id"]])[0]
    ]
    fetch_overlap = overlap_s(done["fetch_prices"], done["fetch_volumes"])
    report_overlap = overlap_s(done["trader_report"], done["risk_report"])
    makespan = max(interval(done[j])[1] for j in ids) - min(interval(done[j])[0] for j in ids)
    s.check("all succeeded", all(done[j]["status"] == "succeeded" for j in ids))
    s.check("no dependency edge violated", not violations)
    s.check("parallel branches overlapped", fetch_overlap > 0 and report_overlap > 0)
    s.observed = (
        f"submitted as one batch, children first; 8 edges, {len(violations)} violated; fetches overlapped "
        f"{fetch_overlap * 1000:.0f} ms, reports overlapped {report_overlap * 1000:.0f} ms (each job "
        f"{S3_DURATION:.1f} s); makespan {makespan:.2f} s vs critical path 4 × {S3_DURATION:.1f} = "
        f"{4 * S3_DURATION:.1f} s"
    )
    return s


def scenario_4(api: Api) -> Scenario:
    s = Scenario(
        "4. Resource contention",
        "never above 8 CPU / 4096 MB; higher priority first; light jobs fill gaps",
    )
    heavy_s, light_s = 0.4, 0.1
    jobs = [
        {
            "job_id": f"heavy_{i}",
            "type": "data_processing",
            "priority": "high" if i < 2 else "normal",
            "payload": {"batch_size": 10000, "duration_seconds": heavy_s},
            "resource_requirements": {"cpu_units": 4, "memory_mb": 2048},
        }
        for i in range(5)
    ] + [
        {
            "job_id": f"light_{i}",
            "type": "quick_task",
            "priority": "normal",
            "payload": {"task_id": i, "duration_seconds": light_s},
            "resource_requirements": {"cpu_units": 1, "memory_mb": 256},
        }
        for i in range(5)
    ]
    response = api.http.post("/jobs/batch", json={"jobs": jobs})
    if response.status_code != 201:
        raise RuntimeError(f"POST /jobs/batch -> {response.status_code}: {response.text[:300]}")
    ids = [j["job_id"] for j in jobs]
    done = api.wait_for(ids, TERMINAL, timeout=30)
    cpu, memory = peak_usage(done.values())
    high_start = max(interval(done[f"heavy_{i}"])[0] for i in range(2))
    normal_start = min(interval(done[j])[0] for j in ids if done[j]["priority"] == "normal")
    lights_beside_heavy_4 = sum(overlap_s(done[f"light_{i}"], done["heavy_4"]) > 0 for i in range(5))
    first = min(interval(done[j])[0] for j in ids)
    makespan = max(interval(done[j])[1] for j in ids) - first
    work = sum(
        done[j]["resource_requirements"]["cpu_units"] * (interval(done[j])[1] - interval(done[j])[0]) for j in ids
    )
    s.check("all succeeded", all(done[j]["status"] == "succeeded" for j in ids))
    s.check("peak within 8 CPU / 4096 MB", cpu <= CAPACITY["cpu_units"] and memory <= CAPACITY["memory_mb"])
    s.check("both high heavies started before any normal job", high_start <= normal_start)
    s.check("light jobs ran beside heavy_4", lights_beside_heavy_4 > 0)
    s.observed = (
        f"peak {cpu} CPU / {memory} MB from the attempts' intervals (limit 8 / 4096); high heavies started "
        f"{(normal_start - high_start) * 1000:.0f} ms before the first normal job; {lights_beside_heavy_4} of 5 "
        f"light jobs ran beside heavy_4; makespan {makespan:.2f} s (3 waves of {heavy_s} s heavies = "
        f"{3 * heavy_s:.1f} s), mean CPU use {work / (CAPACITY['cpu_units'] * makespan) * 100:.0f}% of 8 units"
    )
    return s


def scenario_5(api: Api) -> Scenario:
    s = Scenario(
        "5. Failure and recovery",
        "fails twice then succeeds; timeout retried with backoff; permanent failure not retried; "
        "dependents handle parent failure",
    )
    delay = 0.2
    jobs = [
        {
            "job_id": "unreliable_api_call",
            "type": "external_api",
            "payload": {"endpoint": "flaky_service", "fail_times": 2},
            "retry_config": {"max_attempts": 3, "backoff_multiplier": 2, "initial_delay_seconds": delay},
        },
        {
            "job_id": "dependent_on_flaky",
            "type": "processing",
            "depends_on": ["unreliable_api_call"],
            "retry_config": {"max_attempts": 1},
        },
        {
            "job_id": "will_timeout",
            "type": "long_running",
            "payload": {"duration_seconds": 30},
            "timeout_seconds": 1,
            "retry_config": {"max_attempts": 2, "initial_delay_seconds": delay},
        },
        {
            "job_id": "will_fail_permanently",
            "type": "invalid_operation",
            "payload": {"error": "division_by_zero"},
            "retry_config": {"max_attempts": 3},
        },
        {
            "job_id": "dependent_on_permanent",
            "type": "processing",
            "depends_on": ["will_fail_permanently"],
        },
    ]
    for job in jobs:
        api.submit(job)
    ids = [j["job_id"] for j in jobs]
    done = api.wait_for(ids, TERMINAL, timeout=45)

    def outcomes(job_id: str) -> list[str]:
        return [a["outcome"] for a in done[job_id]["attempts"]]

    def gaps(job_id: str) -> list[float]:
        a = done[job_id]["attempts"]
        return [ts(a[i + 1]["started_at"]) - ts(a[i]["finished_at"]) for i in range(len(a) - 1)]

    flaky, timeout, permanent = done["unreliable_api_call"], done["will_timeout"], done["will_fail_permanently"]
    dependent = done["dependent_on_flaky"]
    timeout_runs = [b - a for a, b in (interval(timeout, i) for i in range(len(timeout["attempts"])))]
    s.check(
        "unreliable: failed, failed, succeeded", outcomes("unreliable_api_call") == ["failed", "failed", "succeeded"]
    )
    s.check(
        "dependent_on_flaky succeeded after it",
        dependent["status"] == "succeeded" and interval(dependent, 0)[0] >= interval(flaky)[1],
    )
    s.check(
        "will_timeout: timed_out twice, then failed",
        timeout["status"] == "failed" and outcomes("will_timeout") == ["timed_out", "timed_out"],
    )
    s.check(
        "will_fail_permanently: one attempt, permanent_failure",
        permanent["status"] == "failed" and outcomes("will_fail_permanently") == ["permanent_failure"],
    )
    s.check(
        "dependent of the permanent failure never ran", done["dependent_on_permanent"]["status"] == "upstream_failed"
    )
    s.check(
        "retry gaps follow the backoff",  # 2 ms of slack: the timestamps have millisecond resolution
        all(g >= delay * 2**i - 0.002 for i, g in enumerate(gaps("unreliable_api_call"))),
    )
    s.observed = (
        f"unreliable_api_call (fail_times 2, max 3, initial delay {delay} s ×2): "
        f"{', '.join(outcomes('unreliable_api_call'))}"
        f" → {flaky['status']} on attempt {flaky['attempt_count']}, retry gaps "
        f"{', '.join(f'{g:.2f}' for g in gaps('unreliable_api_call'))} s (configured {delay}, {delay * 2} s + ≤10% "
        f"jitter); dependent_on_flaky {dependent['status']}, started "
        f"{(interval(dependent, 0)[0] - interval(flaky)[1]) * 1000:.0f} ms after it. will_timeout (30 s job, "
        f"timeout 1 s, max 2): {', '.join(outcomes('will_timeout'))} → {timeout['status']}, attempts killed after "
        f"{', '.join(f'{r:.2f}' for r in timeout_runs)} s, retry gap "
        f"{', '.join(f'{g:.2f}' for g in gaps('will_timeout'))} s. "
        f"will_fail_permanently (max 3): {', '.join(outcomes('will_fail_permanently'))} → {permanent['status']} "
        f"after {permanent['attempt_count']} attempt (`{permanent['error']}`); its dependent: "
        f"{done['dependent_on_permanent']['status']}"
    )
    return s


def scenario_circular(api: Api) -> Scenario:
    s = Scenario("Bonus: circular dependencies", "an invalid graph is rejected, nothing is created")
    circular = [
        {"job_id": "job_a", "type": "quick_task", "depends_on": ["job_c"]},
        {"job_id": "job_b", "type": "quick_task", "depends_on": ["job_a"]},
        {"job_id": "job_c", "type": "quick_task", "depends_on": ["job_b"]},
    ]
    single = api.http.post("/jobs", json=circular[0])
    batch = api.http.post("/jobs/batch", json={"jobs": circular})
    detail = batch.json().get("detail", "")
    missing = [api.http.get(f"/jobs/{j['job_id']}").status_code for j in circular]
    s.check("batch → 422 naming the cycle", batch.status_code == 422 and "->" in detail)
    s.check("single POST → 422 (unknown dependency)", single.status_code == 422)
    s.check("nothing created", missing == [404, 404, 404])
    s.observed = (
        f"batch → {batch.status_code} `{detail}`; one by one, job_a → {single.status_code} "
        f"`{single.json().get('detail', '')}`; GET job_a/b/c → {', '.join(map(str, missing))}"
    )
    return s


def run_scenarios(api: Api) -> list[Scenario]:
    results = []
    for fn in (scenario_1, scenario_2, scenario_3, scenario_4, scenario_5, scenario_circular):
        log(f"scenario {fn.__name__}")
        try:
            result = fn(api)
            result.ok = all(passed for _, passed in result.checks)
        except Exception as exc:
            result = Scenario(fn.__name__, "", f"error: {type(exc).__name__}: {exc}", False)
            traceback.print_exc()
        results.append(result)
    return results


# ------------------------------------------------------------------------------------------------ 6. report


@dataclass
class Run:
    started: datetime
    core: list[CoreRow]
    pg_version: str
    pg_kind: str
    perf: Perf
    drains: list[Drain]
    scenarios: list[Scenario]
    svc: ServiceProcess
    duration_s: float = math.nan
    load_before: float = math.nan  # 1-minute load average when the run started
    load_after: float = math.nan


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def sup(n: int) -> str:
    return f"10^{round(math.log10(n))}" if n > 0 and 10 ** round(math.log10(n)) == n else str(n)


def render(run: Run) -> str:
    perf, core, svc = run.perf, run.core, run.svc
    n_cpu = os.cpu_count() or 0
    mem_total = psutil.virtual_memory().total
    out: list[str] = []
    add = out.append
    add("# Evaluation results\n")
    add(
        f"Generated by `scripts/evaluate.py` (`make bench`) on {run.started:%Y-%m-%d %H:%M} UTC from real runs; "
        "every figure below is measured by that script, nothing is written by hand. Rerun it to regenerate.\n"
    )
    add(
        f"- Machine: {n_cpu} CPUs (`nproc`), {mib(mem_total)} RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}\n"
        f"- PostgreSQL {run.pg_version} ({run.pg_kind}), a fresh database migrated with dbmate\n"
        f"- Service: `python -m service serve`, capacity {CAPACITY['cpu_units']} CPU units / "
        f"{CAPACITY['memory_mb']} MB, log level INFO; PostgreSQL, the service's processes, its workers and the "
        f"load generator all share the same {n_cpu} CPUs\n"
        f"- Whole evaluation took {run.duration_s:.0f} s; 1-minute load average {run.load_before:.2f} before it, "
        f"{run.load_after:.2f} after it (anything else running on the machine shares the same CPUs)\n"
    )

    # --- core
    add("## 1. Scheduler core micro-benchmark (no I/O)\n")
    add(
        f"`SchedulerCore` holding n pending jobs (random priorities, 1 CPU / 64 MB each, node capacity one job). "
        f"Cost per operation: {CORE_OPS} operations timed in chunks of {CORE_CHUNK} with `time.perf_counter`, "
        "the median chunk's mean (a shared VM's stalls hit single chunks; the median ignores them). All sizes are "
        "built first and then measured interleaved, one chunk of each operation at each size per round, so that "
        "the machine's speed drifting during the run moves every size alike. Between chunks the queue is put "
        "back to n jobs (untimed). *submit* = `admit` of one "
        "more job; *position* = `position()` of a random pending job; *cancel* = `cancel()` of a random pending "
        "job; *dispatch+complete* = `tick()` starting the head, then `attempt_finished(SUCCEEDED)`, per job "
        f"(a blocked head makes a tick scan up to {BACKFILL_DEPTH} queued jobs for backfill, but only when "
        "something could fit). Garbage collection stays on.\n"
    )
    sizes = [r.n for r in core]
    rows = []
    for op in CORE_OPERATIONS:
        cells = [f"{r.us[op]:.2f}" for r in core]
        last_decade = f"{ratio(core[-1].us[op], core[-2].us[op]):.2f}×" if len(core) > 1 else "–"
        rows.append([f"{op} (µs)", *cells, f"{ratio(core[-1].us[op], core[0].us[op]):.2f}×", last_decade])
    rows.append(["build: admit n jobs (s)", *[f"{r.build_s:.3f}" for r in core], "–", "–"])
    rows.append(
        [
            "memory per queued job (RSS growth, bytes)",
            *[f"{r.rss_per_job:.0f}" if r.n >= 10**5 else "–" for r in core],
            "–",
            "–",
        ]
    )
    first, last = sup(sizes[0]), sup(sizes[-1])
    before_last = sup(sizes[-2]) if len(sizes) > 1 else first
    header = [f"n = {sup(n)}" for n in sizes]
    add(table(["operation", *header, f"cost({last}) / cost({first})", f"cost({last}) / cost({before_last})"], rows))
    add("")

    # --- performance
    lat = perf.submit_lat
    add(f"## 2. Performance test: {PERF_JOBS} jobs over HTTP\n")
    add(
        f"{PERF_JOBS} `quick_task` jobs (`duration_seconds: 0`, 1 CPU / 64 MB, priorities drawn at random from the "
        f"four levels) sent as single `POST /jobs` requests by {PERF_CONCURRENCY} concurrent `httpx.AsyncClient` "
        "requests; then waited (polling `GET /stats`) until all had succeeded. Job timestamps are the service's "
        f"own: every job from `GET /jobs?status=succeeded` pages, attempts from `GET /jobs/{{id}}` for a sample "
        f"of {PERF_SAMPLE}.\n"
    )
    by_prio = "; ".join(
        f"{p} {ms(pct(perf.wait_by_priority.get(p, []), 50))}" for p in PRIORITIES if p in perf.wait_by_priority
    )
    cap_bound = CAPACITY["cpu_units"] / mean(perf.run_all) if mean(perf.run_all) > 0 else math.nan
    add(
        table(
            ["metric", "value"],
            [
                ["time to accept all 1000 submissions", f"{perf.accept_s:.2f} s"],
                ["submissions accepted per second", f"{PERF_JOBS / perf.accept_s:.0f} /s"],
                [
                    "submit latency p50 / p95 / p99 / max",
                    f"{ms(pct(lat, 50))} / {ms(pct(lat, 95))} / {ms(pct(lat, 99))} / {ms(max(lat))}",
                ],
                ["load generator CPU while submitting", f"{perf.client_cpu_s:.2f} s"],
                ["first submit → all 1000 succeeded", f"{perf.e2e_s:.2f} s"],
                ["end-to-end throughput", f"{PERF_JOBS / perf.e2e_s:.0f} jobs/s"],
                ["last accept → last job finished (draining the backlog)", f"{perf.drain_s:.2f} s"],
                ["first start → last start (dispatch span)", f"{perf.start_span_s:.2f} s"],
                ["dispatch rate (jobs started / dispatch span)", f"{PERF_JOBS / perf.start_span_s:.0f} jobs/s"],
                [
                    "jobs running at once, peak / mean (from start/finish times)",
                    f"{perf.peak_running} / {perf.mean_running:.1f} (capacity allows 8)",
                ],
                [
                    "job run time (start → finish) p50 / p95 / mean",
                    f"{ms(pct(perf.run_all, 50))} / {ms(pct(perf.run_all, 95))} / {ms(mean(perf.run_all))}",
                ],
                [
                    "submit → start (all 1000, job started_at − created_at) p50 / p95 / p99",
                    f"{ms(pct(perf.wait_all, 50))} / {ms(pct(perf.wait_all, 95))} / {ms(pct(perf.wait_all, 99))}",
                ],
                [
                    f"submit → start (sample of {PERF_SAMPLE}, attempts[0].started_at − created_at) p50 / p95",
                    f"{ms(pct(perf.sample_wait, 50))} / {ms(pct(perf.sample_wait, 95))} "
                    f"({perf.sample_attempts} attempts in {PERF_SAMPLE} jobs)",
                ],
                ["submit → start p50 by priority", by_prio],
                [
                    f"one job at a time on an idle node ({len(perf.one_at_a_time_post)} jobs): "
                    "submit → start p50 / p95 (ms resolution)",
                    f"{ms(pct(perf.one_at_a_time_start, 50))} / {ms(pct(perf.one_at_a_time_start, 95))}",
                ],
                [
                    "one job at a time: POST /jobs round trip p50 / p95",
                    f"{ms(pct(perf.one_at_a_time_post, 50))} / {ms(pct(perf.one_at_a_time_post, 95))}",
                ],
            ],
        )
    )
    add("")
    add(f"### CPU time by process during the {PERF_JOBS}-job run ({perf.cpu_wall_s:.2f} s wall)\n")
    cpu_items = [(k, v) for k, v in perf.cpu.items() if v > 0.005]
    cpu_total = sum(v for _, v in cpu_items) + perf.client_cpu_s
    cpu_rows = [
        [k, f"{v:.2f}", f"{v / perf.cpu_wall_s * 100:.0f}%"] for k, v in sorted(cpu_items, key=lambda kv: -kv[1])
    ]
    cpu_rows.append(["load generator (this script, submit phase only)", f"{perf.client_cpu_s:.2f}", "–"])
    cpu_rows.append(["**total**", f"{cpu_total:.2f}", f"{cpu_total / perf.cpu_wall_s * 100:.0f}% of {n_cpu * 100}%"])
    add(table(["process", "CPU s", "of one core"], cpu_rows))
    add(
        "\n`workers` is the CPU of the per-attempt worker processes (reaped ones through the supervisor's children "
        "times); `postgresql` is the embedded server's postmaster and backends (absent with an external server).\n"
    )
    add("### Memory: RSS of the service process tree\n")
    add(
        "Summed over the root and all its descendants (`psutil`, recursive); pages shared after `fork` are counted "
        "in every process that maps them, so the total overstates the real footprint. Database size is "
        "`pg_database_size`.\n"
    )
    roles = ["root", "scheduler", "supervisor", "api", "workers", "other"]
    roles = [r for r in roles if any(v.get(r, 0) for v in perf.rss.values())]
    add(
        table(
            ["stage", *roles, "total", "database size"],
            [
                [stage, *[mib(v[r]) for r in roles], f"**{mib(v['total'])}**", mib(perf.db_size[stage])]
                for stage, v in perf.rss.items()
            ],
        )
    )
    add("")
    add("### Query latency as the table grows\n")
    batch_total = sum(perf.batch_s)
    small, large = perf.jobs_at["small"], perf.jobs_at["large"]
    add(
        f"Sequential requests over one keep-alive connection, after 10 warm-up requests: with {small} rows in the jobs "
        f"table (the {PERF_JOBS} succeeded jobs and any earlier ones), then with {large}, after {PERF_JOBS} more "
        f"single submissions and {BULK_BATCHES} `POST /jobs/batch` requests of {BULK_BATCH_SIZE} jobs, all with "
        f"`run_at` {FAR_FUTURE} so that they stay `scheduled` ({perf.scheduled_after_batches} scheduled afterwards). "
        f"`GET /jobs/{{id}}` reads the same {PERF_SAMPLE} succeeded jobs both times.\n"
    )
    q_rows = []
    for name in perf.queries["small"]:
        a, b = perf.queries["small"][name], perf.queries["large"][name]
        q_rows.append(
            [
                f"`{name}`",
                len(a),
                ms(pct(a, 50)),
                ms(pct(a, 95)),
                ms(pct(b, 50)),
                ms(pct(b, 95)),
                f"{ratio(pct(b, 50), pct(a, 50)):.2f}×",
            ]
        )
    add(
        table(
            ["query", "requests", f"p50 @ {small}", f"p95 @ {small}", f"p50 @ {large}", f"p95 @ {large}", "p50 growth"],
            q_rows,
        )
    )
    add("")
    idle = perf.idle_submit_lat
    add(
        table(
            ["submission without execution (jobs that do not run yet)", "value"],
            [
                [
                    f"{PERF_JOBS} single `POST /jobs`, {PERF_CONCURRENCY} in flight: time, rate",
                    f"{perf.idle_accept_s:.2f} s → {PERF_JOBS / perf.idle_accept_s:.0f} /s",
                ],
                [
                    "their latency p50 / p95 / p99",
                    f"{ms(pct(idle, 50))} / {ms(pct(idle, 95))} / {ms(pct(idle, 99))}",
                ],
                [
                    f"{BULK_BATCHES} × {BULK_BATCH_SIZE} jobs, total",
                    f"{batch_total:.2f} s → {BULK_BATCHES * BULK_BATCH_SIZE / batch_total:.0f} jobs/s",
                ],
                [
                    "one batch of 1000, min / median / max",
                    " / ".join(f"{x:.2f} s" for x in (min(perf.batch_s), pct(perf.batch_s, 50), max(perf.batch_s))),
                ],
            ],
        )
    )
    add("")

    add("### End to end: a fresh process per job, or a reused worker\n")
    add(
        f"{DRAIN_JOBS} jobs with `duration_seconds: 0` sent as one `POST /jobs/batch` to the idle node (after "
        "`VACUUM ANALYZE` and `CHECKPOINT`, so that both start from the same database state), then drained. "
        "`quick_task` runs each attempt in a fresh forked process; `tiny_task` is the same handler registered with "
        "`reuse_worker=True`, so the supervisor hands the next attempt to a worker whose attempt ended cleanly. "
        "Throughput = jobs / (last finish − first start); CPU per job is each process role's CPU over the whole "
        f"drain divided by {DRAIN_JOBS}; worker processes are counted from the attempts of 100 sampled jobs.\n"
    )
    roles = ["workers", "supervisor", "scheduler", "postgresql", "api"]
    add(
        table(
            [
                "job type",
                "throughput",
                "batch sent → last finish",
                *[f"{r} CPU/job" for r in roles],
                "worker processes in the sample",
            ],
            [
                [
                    f"`{d.job_type}`",
                    f"{d.jobs / d.span_s:.0f} jobs/s",
                    f"{d.total_s:.2f} s",
                    *[f"{d.cpu.get(r, math.nan) / d.jobs * 1000:.2f} ms" for r in roles],
                    f"{d.workers} for {d.sample} jobs",
                ]
                for d in run.drains
            ],
        )
    )
    add("")

    # --- scenarios
    add("## 3. Test scenarios\n")
    add(
        "Driven over HTTP against the same running service (after the performance test), with durations scaled "
        "down (0.1-1 s instead of minutes). Times come from the jobs' attempts as the service recorded them, with "
        "millisecond resolution.\n"
    )
    add(
        table(
            ["scenario", "expected", "observed", "result"],
            [
                [
                    s.name,
                    s.expected,
                    s.observed.replace("|", "\\|"),
                    "PASS" if s.ok else "FAIL: " + ("; ".join(w for w, ok in s.checks if not ok) or "error"),
                ]
                for s in run.scenarios
            ],
        )
    )
    add("")

    # --- lifecycle
    add("## 4. Service start and stop\n")
    add(
        table(
            ["", "value"],
            [
                ["start → `GET /health/ready` 200 (includes dbmate up)", f"{svc.ready_s:.2f} s"],
                ["SIGTERM → exit (graceful drain; 10k scheduled jobs held)", f"{svc.stop_s:.2f} s"],
                ["exit code", f"{svc.exit_code}" + (f" ({svc.stop_note.strip()})" if svc.stop_note else "")],
            ],
        )
    )
    add("")

    # --- bottlenecks
    add("## 5. Bottlenecks and scaling limits\n")
    add("Each statement is computed from the figures above.\n")
    for line in bottlenecks(run, cap_bound, cpu_total, n_cpu):
        add(f"- {line}")
    add("")
    return "\n".join(out)


def bottlenecks(run: Run, cap_bound: float, cpu_total: float, n_cpu: int) -> list[str]:
    perf, core = run.perf, run.core
    lines = []
    accept_share = perf.accept_s / perf.e2e_s
    drain = max(perf.e2e_s - perf.accept_s, 0.0)
    if accept_share >= 0.5:
        lines.append(
            f"**Admission dominates end-to-end time**: accepting the {PERF_JOBS} submissions took "
            f"{perf.accept_s:.2f} s of {perf.e2e_s:.2f} s ({accept_share * 100:.0f}%); the last jobs finished "
            f"{drain:.2f} s after the last accept."
        )
    else:
        lines.append(
            f"**Execution dominates end-to-end time**: accepting the {PERF_JOBS} submissions took "
            f"{perf.accept_s:.2f} s ({PERF_JOBS / perf.accept_s:.0f}/s) but running them took until {perf.e2e_s:.2f} s "
            f"({PERF_JOBS / perf.e2e_s:.0f} jobs/s): {drain:.2f} s ({(1 - accept_share) * 100:.0f}%) were spent "
            "draining the backlog after the last accept."
        )
    run50 = pct(perf.run_all, 50)
    slots = CAPACITY["cpu_units"]
    start_rate = PERF_JOBS / perf.start_span_s
    slot_text = (
        f"**Slots**: a zero-duration job held its slot for {mean(perf.run_all) * 1000:.0f} ms on average "
        f"(p50 {run50 * 1000:.0f} ms; committed start → "
        "committed finish: hand-off to a worker process, the handler's event loop, the result report and its "
        f"commit). On average {perf.mean_running:.1f} of the {slots} slots were busy (peak {perf.peak_running}); "
        f"{slots} slots at that holding time allow ≈{cap_bound:.0f} jobs/s, and jobs were started at "
        f"{start_rate:.0f}/s."
    )
    if perf.mean_running >= 0.75 * slots:
        slot_text += " The slots were mostly full: per-attempt overhead, which holds a slot, bounds throughput here."
    elif accept_share >= 0.5:
        slot_text += (
            " The slots were mostly free: jobs arrived no faster than they were accepted, so arrival set the pace."
        )
    else:
        slot_text += (
            " The slots were mostly free while a backlog waited: the dispatch path (scheduler turns and their "
            "commits), not capacity, set the pace."
        )
    lines.append(slot_text)
    top_role, top_cpu = max(perf.cpu.items(), key=lambda kv: kv[1])
    util = cpu_total / (perf.cpu_wall_s * n_cpu)
    service_cpu = sum(perf.cpu.values())
    per_job = service_cpu / PERF_JOBS
    lines.append(
        f"**CPU**: the run used {cpu_total:.1f} CPU-seconds in {perf.cpu_wall_s:.1f} s on {n_cpu} CPUs "
        f"({util * 100:.0f}% of the machine, load generator included); the busiest process was `{top_role}` with "
        f"{top_cpu:.1f} s ({top_cpu / cpu_total * 100:.0f}% of the total). The service"
        + (" and PostgreSQL" if "postgresql" in perf.cpu else " (PostgreSQL's CPU not measured)")
        + f" spent {per_job * 1000:.1f} ms of CPU per job, so {n_cpu} CPUs could carry at most "
        f"≈{n_cpu / per_job:.0f} jobs/s of this kind if CPU were the only limit"
        + (" (it was close to saturation in this run)." if util > 0.8 else f" ({start_rate:.0f}/s were reached).")
    )
    w50, w95 = pct(perf.wait_all, 50), pct(perf.wait_all, 95)
    prio = {p: pct(v, 50) for p, v in perf.wait_by_priority.items()}
    if prio.get("critical", math.nan) < prio.get("low", math.nan):
        prio_note = (
            f"; priority held under load: critical waited {prio['critical'] * 1000:.0f} ms at p50 vs "
            f"low {prio['low'] * 1000:.0f} ms"
        )
    else:
        prio_note = "; priority made no visible difference to waiting at this load"
    lines.append(
        f"**Latency under a burst is queueing**: submit → start was {w50 * 1000:.0f} ms at p50 and {w95 * 1000:.0f} ms "
        f"at p95, against a run time of {run50 * 1000:.0f} ms{prio_note}."
    )
    lat = perf.submit_lat
    busy_rate = PERF_JOBS / perf.accept_s
    idle_rate = PERF_JOBS / perf.idle_accept_s
    batch_rate = BULK_BATCHES * BULK_BATCH_SIZE / sum(perf.batch_s)
    lines.append(
        f"**Submission**: single `POST /jobs` with {PERF_CONCURRENCY} in flight were accepted at {busy_rate:.0f}/s "
        f"(p50 {pct(lat, 50) * 1000:.0f} ms, p99 {pct(lat, 99) * 1000:.0f} ms) while the jobs were also being "
        f"executed, and at {idle_rate:.0f}/s (p50 {pct(perf.idle_submit_lat, 50) * 1000:.0f} ms) for jobs that do "
        f"not run yet: execution competing for the same CPUs cost ×{ratio(idle_rate, busy_rate):.1f} in submit rate. "
        f"`POST /jobs/batch` of {BULK_BATCH_SIZE} reached {batch_rate:.0f} jobs/s, ×{ratio(batch_rate, idle_rate):.1f} "
        "the single-request rate without execution"
        + (
            ": the cost of a single submission is mostly per request, not per row."
            if batch_rate >= 2 * idle_rate
            else "."
        )
    )
    small, large = perf.jobs_at["small"], perf.jobs_at["large"]
    growth = {
        name: ratio(pct(perf.queries["large"][name], 50), pct(perf.queries["small"][name], 50))
        for name in perf.queries["small"]
    }
    worst = max(growth, key=lambda k: growth[k])
    flat = [f"`{k}` ×{v:.2f}" for k, v in growth.items() if v < 1.5]
    lines.append(
        f"**Queries as the table grew {large / small:.0f}×** ({small} → {large} rows): "
        + (", ".join(flat) + " stayed flat (index-backed); " if flat else "")
        + f"the largest p50 growth was `{worst}` (×{growth[worst]:.2f}, "
        f"{pct(perf.queries['small'][worst], 50) * 1000:.1f} → {pct(perf.queries['large'][worst], 50) * 1000:.1f} ms)"
        + (
            "; `GET /stats` counts the whole jobs table on every call, so it is the query that grows with history."
            if worst == "GET /stats" and growth[worst] >= 1.5
            else "."
        )
    )
    stages = list(perf.rss)
    sched_growth = perf.rss[stages[-1]]["scheduler"] - perf.rss[stages[-2]]["scheduler"]
    total_growth = perf.rss[stages[-1]]["total"] - perf.rss[stages[0]]["total"]
    per_job = sched_growth / (BULK_BATCHES * BULK_BATCH_SIZE)
    lines.append(
        f"**Memory**: the service tree's RSS grew by {mib(total_growth)} over the whole test; the scheduler's RSS "
        f"grew by {mib(sched_growth)} for {BULK_BATCHES * BULK_BATCH_SIZE} more live (scheduled) jobs, "
        f"≈{per_job:.0f} bytes each (≈{per_job * 1e6 / 2**30:.1f} GiB per million live jobs, since the scheduler "
        "holds every live job in memory). Terminal jobs leave its memory; they only cost database space."
    )
    big = core[-1]
    worst_op = max(CORE_OPERATIONS, key=lambda op: ratio(big.us[op], core[0].us[op]))
    prev = core[-2] if len(core) > 1 else core[0]
    worst_last = max(CORE_OPERATIONS, key=lambda op: ratio(big.us[op], prev.us[op]))
    lines.append(
        f"**The in-memory queue is not a bottleneck**: from {sup(core[0].n)} to {sup(big.n)} waiting jobs the cost "
        f"per operation grew at most ×{ratio(big.us[worst_op], core[0].us[worst_op]):.2f} ({worst_op}), and over the "
        f"last decade ({sup(prev.n)} → {sup(big.n)}) at most ×{ratio(big.us[worst_last], prev.us[worst_last]):.2f} "
        f"({worst_last}); a pure O(log n) cost would grow ×{math.log2(big.n) / math.log2(core[0].n):.1f} and "
        f"×{math.log2(big.n) / math.log2(prev.n):.2f}. At {sup(big.n)} jobs the dearest operation costs "
        f"{max(big.us.values()):.1f} µs, against {pct(perf.submit_lat, 50) * 1000:.1f} ms for one HTTP submit at p50."
    )
    lines.append(
        f"**Restart cost grows with the backlog**: rebuilding a core of {sup(big.n)} jobs by `admit` took "
        f"{big.build_s:.1f} s here (one thread, no I/O; ≈{big.rss_per_job:.0f} bytes per job), before any "
        "database read; a scheduler restart with millions of live jobs pauses dispatch for at least that long."
    )
    return lines


# ------------------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the report")
    parser.add_argument(
        "--core-max", type=int, default=CORE_SIZES[-1], help="largest core benchmark size (default 10^6)"
    )
    args = parser.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so that the `finally` below stops what was started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = datetime.now(UTC)
    t_start = time.monotonic()
    load_before = os.getloadavg()[0]

    log("scheduler core micro-benchmark")
    core = core_benchmark([n for n in CORE_SIZES if n <= args.core_max])

    db = Database()
    svc: ServiceProcess | None = None
    api: Api | None = None
    workdir = Path(tempfile.mkdtemp(prefix="taskq-eval-"))
    try:
        log("starting PostgreSQL" + (" (external TASKQ_DATABASE_URL)" if db.external else " (embedded)"))
        url = db.start()
        log(f"PostgreSQL {db.version}, database {db.name}")
        svc = ServiceProcess(url, workdir / "service.log")
        svc.start()
        log(f"service ready on {svc.base_url} in {svc.ready_s:.2f}s")
        api = Api(svc.base_url)
        idle = Perf()
        one_at_a_time(api, idle)  # first, on the fresh node: nothing else running, no vacuum pending
        perf = performance_test(svc, db, api)
        perf.one_at_a_time_start, perf.one_at_a_time_post = idle.one_at_a_time_start, idle.one_at_a_time_post
        drains = [drain_test(svc, db, api, job_type) for job_type in ("quick_task", "tiny_task")]
        scenarios = run_scenarios(api)
        api.close()
        api = None
        log("stopping the service (SIGTERM)")
        svc.stop()
        log(f"service exited with {svc.exit_code} in {svc.stop_s:.2f}s")
    except BaseException:
        if svc is not None:
            print(f"--- service log tail ---\n{svc.log_tail()}", file=sys.stderr)
        raise
    finally:
        try:
            if api is not None:
                api.close()
            if svc is not None:
                svc.stop()
        finally:
            db.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    assert svc is not None
    run = Run(
        started=started,
        core=core,
        pg_version=db.version,
        pg_kind="external server, TASKQ_DATABASE_URL" if db.external else "embedded, pgserver",
        perf=perf,
        drains=drains,
        scenarios=scenarios,
        svc=svc,
        duration_s=time.monotonic() - t_start,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )
    args.output.write_text(render(run) + "\n")
    log(f"wrote {args.output}")
    failed = [s.name for s in scenarios if not s.ok]
    if failed:
        log(f"scenarios that did not pass: {failed}")
    return 1 if failed or svc.exit_code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
