"""The cluster: several `taskq serve` nodes on one database sharing `TASKQ_CLUSTER_SECRET`, one scheduler
leading (the lease) and placing jobs on every node's supervisor.

- `spread`: the same drain (N `tiny_task` jobs of 1 CPU / 1 MB, `POST /jobs/batch` requests sent round robin
  through every node, the non-leaders too) on three clustered nodes, on one clustered node alone, and on a
  plain single node (no secret), each on a fresh database: drain rate, jobs per node (`attempts.node`), the
  leading scheduler's CPU per job (psutil, by process title) and the standby schedulers' (their relays).
- `failover`: with three nodes, SIGKILL to the leading node's whole process group, a job submitted at once
  through a survivor; kill → the lease taken (the `scheduler_lease` row), kill → a survivor's `GET /stats`
  names a new leader, kill → that job's `attempts.started_at`. The killed node is restarted under its name
  (on a new port) and rejoins before the next round.

`python -m scripts.bench.cluster` runs this alone on an embedded PostgreSQL (or TASKQ_DATABASE_URL) and prints
the report's section; `make bench` runs it as section 9. Every process is started here and stopped by pid
(SIGTERM to each node's root, or SIGKILL to its process group) in `finally`; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from .common import log, pct, peak_concurrency, wait_until
from .database import US, Database, PgServer
from .drain import DRAIN_CAPACITY, DRAIN_NEEDS
from .http_load import RawHttp, build_request
from .service_proc import ServiceProcess

CLUSTER_JOBS = 3000
CLUSTER_BATCH = 250
CLUSTER_NODES = ("n1", "n2", "n3")
CLUSTER_CAPACITY = DRAIN_CAPACITY  # per node: 64 CPU units, far more than the machine, so slots are not the limit
LEASE_SECONDS = 2.0  # TASKQ_LEADER_LEASE_SECONDS for every clustered run (the default is 5)
FAILOVER_ROUNDS = 10
JOB_TYPE = "tiny_task"  # `quick_task` in a reused worker: the dispatch path, not fork, is what is measured


@dataclass
class Spread:
    """One drain of N jobs on one configuration."""

    label: str
    nodes: int
    clustered: bool
    jobs: int
    leader: str = ""
    span_s: float = 0.0  # first attempt start → last job finish (PostgreSQL µs timestamps)
    total_s: float = 0.0  # first batch sent → last job finish
    submit_s: float = 0.0  # first batch sent → last batch answered
    per_node: dict[str, int] = field(default_factory=dict)  # attempts by `attempts.node`
    submitted_via: dict[str, int] = field(default_factory=dict)  # jobs sent through each node's API
    leader_scheduler_cpu_s: float = 0.0  # the leading node's scheduler process
    standby_scheduler_cpu_s: float = 0.0  # the other nodes' scheduler processes (relays), summed
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by role, summed over the nodes
    pg_cpu_s: float = math.nan
    wait_s: list[float] = field(default_factory=list)  # created → attempt start
    peak_running: int = 0
    attempts: int = 0
    machine_busy: float = 0.0  # share of the machine's CPU busy over the drain, anyone's processes

    @property
    def throughput(self) -> float:
        return self.jobs / self.span_s if self.span_s > 0 else 0.0

    @property
    def service_cpu_s(self) -> float:
        return sum(self.cpu.values())


@dataclass
class FailoverRound:
    killed: str
    via: str  # the survivor the job was submitted through and whose /stats was read
    new_leader: str = ""
    submit_s: float = math.nan  # kill → the survivor's 201
    lease_s: float = math.nan  # kill → the lease row seen held by another node (polled every 50 ms)
    stats_s: float = math.nan  # kill → the survivor's /stats names the new leader (polled every 50 ms)
    start_s: float = math.nan  # kill → the job's `attempts.started_at` (first dispatch by the new leader)
    ran_on: str = ""
    slowest_stats_s: float = 0.0  # the longest one `GET /stats` took to answer during the failover
    rejoin_s: float = math.nan  # restart of the killed node → all nodes connected to the leader again


@dataclass
class ClusterBench:
    jobs: int
    batch: int
    lease_s: float
    spreads: list[Spread] = field(default_factory=list)
    rounds: list[FailoverRound] = field(default_factory=list)
    # One job at a time on the idle three-node cluster, through the leader's API and through another
    # node's: `jobs.created_at` (its commit) → `attempts.started_at` (its dispatch), in ms.
    idle_start_ms: dict[str, list[float]] = field(default_factory=dict)
    load_before: float = math.nan  # 1-minute load average
    load_after: float = math.nan
    duration_s: float = math.nan
    notes: list[str] = field(default_factory=list)


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, max, count) of the finite values; NaNs (a round that did not get there) are left out."""
    seen = [v for v in values if not math.isnan(v)]
    return pct(seen, 50), (max(seen) if seen else math.nan), float(len(seen))


class Nodes:
    """The service processes of one configuration: started here, stopped here (by pid), all of them."""

    def __init__(self, db: Database, workdir: Path, lease_s: float, secret: str | None) -> None:
        self.db, self.workdir, self.lease_s, self.secret = db, workdir, lease_s, secret
        self.nodes: dict[str, ServiceProcess] = {}  # the live process of each name
        self.all: list[ServiceProcess] = []  # every process started, killed ones too
        self.http = httpx.Client(timeout=10.0)

    def start(self, name: str) -> ServiceProcess:
        env = {"TASKQ_NODE_NAME": name}
        if self.secret is not None:
            env |= {"TASKQ_CLUSTER_SECRET": self.secret, "TASKQ_LEADER_LEASE_SECONDS": f"{self.lease_s:g}"}
        log_path = self.workdir / f"{self.db.url.rsplit('/', 1)[-1]}-{name}-{len(self.all)}.log"
        svc = ServiceProcess(self.db.url, log_path, CLUSTER_CAPACITY, env)
        self.all.append(svc)
        svc.start()
        self.nodes[name] = svc
        return svc

    def stats(self, via: ServiceProcess) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"{via.base_url}/stats").json()
        return body

    def wait_connected(self, via: ServiceProcess, names: Iterable[str], timeout: float = 60.0) -> dict[str, Any]:
        wanted = set(names)

        def check() -> dict[str, Any]:  # empty: not yet
            with contextlib.suppress(httpx.HTTPError, ValueError):
                stats = self.stats(via)
                nodes = stats.get("nodes")
                if nodes is None:  # a plain single node: no node list, its own scheduler leads
                    return stats if stats.get("leader") else {}
                connected = {n["name"] for n in nodes if n["connected"] and not n["draining"]}
                return stats if stats.get("leader") and wanted <= connected else {}
            return {}

        return wait_until(check, timeout=timeout, interval=0.1, what=f"nodes {sorted(wanted)} connected to a leader")

    def stop(self) -> None:
        self.http.close()
        for svc in self.all:
            with contextlib.suppress(Exception):
                svc.stop()


def _cpu(nodes: Sequence[ServiceProcess], pg: PgServer) -> tuple[list[dict[str, float]], float, tuple[float, float]]:
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    pg_s = pg.cpu_seconds()
    return [svc.cpu() for svc in nodes], math.nan if pg_s is None else pg_s, (float(sum(t) - idle), float(sum(t)))


def spread(label: str, group: Nodes, pg: PgServer, jobs: int, batch: int) -> Spread:
    """Sends `jobs` jobs in batches round robin through every node of `group`, and waits for them all."""
    names = list(group.nodes)
    nodes = [group.nodes[n] for n in names]
    leader = str(group.wait_connected(nodes[0], names)["leader"])
    out = Spread(label, len(nodes), group.secret is not None, jobs, leader=leader)
    group.db.settle()
    requests: list[tuple[int, bytes]] = []
    for b in range(math.ceil(jobs / batch)):
        i = b % len(nodes)
        body = {
            "jobs": [
                {
                    "job_id": f"{label}-{j:05d}",
                    "type": JOB_TYPE,
                    "payload": {"duration_seconds": 0},
                    "resource_requirements": DRAIN_NEEDS,
                }
                for j in range(b * batch, min((b + 1) * batch, jobs))
            ]
        }
        requests.append((i, build_request("POST", "/jobs/batch", nodes[i].port, json.dumps(body).encode())))
        out.submitted_via[names[i]] = out.submitted_via.get(names[i], 0) + len(body["jobs"])
    log(f"cluster {label}: {jobs} {JOB_TYPE} jobs in batches of {batch} through {', '.join(names)} (leader {leader})")
    conns = [RawHttp(svc.port) for svc in nodes]
    try:
        cpu0, pg0, machine0 = _cpu(nodes, pg)
        t0 = time.time()
        for i, raw in requests:
            status, answer = conns[i].request(raw)
            if status != 201:
                raise RuntimeError(f"POST /jobs/batch through {names[i]} -> {status}: {answer[:300]!r}")
        out.submit_s = time.time() - t0
    finally:
        for c in conns:
            c.close()

    def done() -> bool:
        ok, bad = group.db.fetch(
            """SELECT count(*) FILTER (WHERE status = 'succeeded'),
                      count(*) FILTER (WHERE status IN ('failed', 'cancelled', 'upstream_failed'))
               FROM jobs WHERE job_id LIKE $1""",
            f"{label}-%",
        )[0]
        if bad:
            raise RuntimeError(f"{bad} {label} jobs ended badly")
        return bool(ok >= jobs)

    wait_until(done, timeout=240, interval=0.5, what=f"{jobs} {label} jobs to succeed")
    cpu1, pg1, machine1 = _cpu(nodes, pg)
    for name, before, after in zip(names, cpu0, cpu1, strict=True):
        delta = {role: after[role] - before.get(role, 0.0) for role in after}
        for role, seconds in delta.items():
            out.cpu[role] = out.cpu.get(role, 0.0) + seconds
        if name == leader or len(nodes) == 1:
            out.leader_scheduler_cpu_s += delta["scheduler"]
        else:
            out.standby_scheduler_cpu_s += delta["scheduler"]
    out.pg_cpu_s = pg1 - pg0
    busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
    out.machine_busy = busy / total if total else 0.0
    rows = group.db.fetch(
        f"""SELECT {US.format("j.created_at")} AS created, {US.format("a.started_at")} AS started,
                   {US.format("a.finished_at")} AS attempt_finished, {US.format("j.finished_at")} AS finished,
                   a.node
            FROM jobs j JOIN attempts a ON a.job_id = j.job_id
            WHERE j.job_id LIKE $1""",
        f"{label}-%",
    )
    out.attempts = len(rows)
    for r in rows:
        out.per_node[r["node"] or "?"] = out.per_node.get(r["node"] or "?", 0) + 1
    out.span_s = (max(r["finished"] for r in rows) - min(r["started"] for r in rows)) / 1e6
    out.total_s = max(r["finished"] for r in rows) / 1e6 - t0
    out.wait_s = [(r["started"] - r["created"]) / 1e6 for r in rows]
    out.peak_running = peak_concurrency((r["started"], r["attempt_finished"]) for r in rows)
    per_node = ", ".join(f"{n} {c}" for n, c in sorted(out.per_node.items()))
    log(
        f"cluster {label}: {out.throughput:,.0f} jobs/s over {out.span_s:.2f}s ({per_node}); leader scheduler "
        f"{out.leader_scheduler_cpu_s / jobs * 1e6:.0f} µs CPU/job"
    )
    return out


IDLE_SUBMISSIONS = 30


def idle_starts(group: Nodes, count: int = IDLE_SUBMISSIONS) -> dict[str, list[float]]:
    """On the idle cluster, `count` jobs one at a time through the leader's API, then through another
    node's (whose notice reaches the leader over the relayed link): commit → dispatch of each."""
    leader = str(group.wait_connected(next(iter(group.nodes.values())), group.nodes)["leader"])
    other = next(name for name in group.nodes if name != leader)
    out: dict[str, list[float]] = {}
    for label, name in (("through the leader's API", leader), ("through another node's API", other)):
        svc = group.nodes[name]
        ids = []
        for i in range(count):
            job_id = f"idle-{name}-{i:03d}"
            answer = group.http.post(
                f"{svc.base_url}/jobs", json={"job_id": job_id, "type": JOB_TYPE, "payload": {"duration_seconds": 0}}
            )
            if answer.status_code != 201:
                raise RuntimeError(f"POST /jobs through {name} -> {answer.status_code}: {answer.text[:300]}")

            def succeeded(url: str = f"{svc.base_url}/jobs/{job_id}") -> bool:
                return bool(group.http.get(url).json()["status"] == "succeeded")

            wait_until(succeeded, timeout=30, interval=0.005, what=f"{job_id} to succeed")
            ids.append(job_id)
        rows = group.db.fetch(
            f"""SELECT {US.format("a.started_at")} - {US.format("j.created_at")} AS wait
                FROM jobs j JOIN attempts a ON a.job_id = j.job_id AND a.attempt = 1
                WHERE j.job_id = ANY($1::text[])""",
            ids,
        )
        out[label] = sorted(r["wait"] / 1e3 for r in rows)
        log(f"cluster idle starts {label}: p50 {pct(out[label], 50):.2f} ms over {len(rows)} jobs")
    return out


def failover(group: Nodes, rounds: int) -> list[FailoverRound]:
    """`rounds` times: SIGKILL the leading node's process group, submit through a survivor at once, time the
    new leader and the job's start; then restart the killed node under its name and wait for it to rejoin."""
    out: list[FailoverRound] = []
    for r in range(rounds):
        result = failover_round(group, f"failover-{r:02d}")
        log(
            f"failover {r + 1}/{rounds}: killed {result.killed}; lease to {result.new_leader} after "
            f"{result.lease_s:.2f}s, on {result.via}'s /stats after {result.stats_s:.2f}s, the job started on "
            f"{result.ran_on} after {result.start_s:.2f}s (slowest /stats {result.slowest_stats_s:.2f}s); "
            f"{result.killed} rejoined in {result.rejoin_s:.1f}s"
        )
        out.append(result)
    return out


def failover_round(group: Nodes, job_id: str) -> FailoverRound:
    names = sorted(group.nodes)
    killed = str(group.wait_connected(group.nodes[names[0]], names)["leader"])
    via_name = next(n for n in names if n != killed)
    via = group.nodes[via_name]
    victim = group.nodes.pop(killed)
    job = {"job_id": job_id, "type": JOB_TYPE, "payload": {"duration_seconds": 0}, "resource_requirements": DRAIN_NEEDS}
    result = FailoverRound(killed, via_name)
    t_kill = victim.kill()
    answer = group.http.post(f"{via.base_url}/jobs", json=job, timeout=30.0)
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"POST /jobs through {via_name} during the failover -> {answer.status_code}")
    result.submit_s = time.time() - t_kill

    try:
        asyncio.run(asyncio.wait_for(_watch_failover(group, via, job_id, t_kill, result), 60))
    except TimeoutError:
        raise TimeoutError(f"no new leader or {job_id} not started within 60 s of the kill; seen: {result}") from None
    if "outlived" in victim.stop_note:
        log(f"{killed}: {victim.stop_note}")
    t_restart = time.monotonic()
    group.start(killed)
    group.wait_connected(via, names)
    result.rejoin_s = time.monotonic() - t_restart
    return result


async def _watch_failover(group: Nodes, via: ServiceProcess, job_id: str, t_kill: float, result: FailoverRound) -> None:
    """Two pollers side by side, every 50 ms, each timed when its answer is in (so an upper bound): the
    database (the lease row's holder, the job's first attempt) on one kept connection, and the survivor's
    `GET /stats` (which may itself wait up to 2 s on its node's scheduler link during the failover)."""

    async def database() -> None:
        conn = await asyncpg.connect(group.db.url, timeout=10)
        try:
            while math.isnan(result.lease_s) or math.isnan(result.start_s):
                row = await conn.fetchrow(
                    f"""SELECT (SELECT holder FROM scheduler_lease WHERE id = 1) AS holder,
                               (SELECT {US.format("started_at")} FROM attempts WHERE job_id = $1 AND attempt = 1)
                                   AS started,
                               (SELECT node FROM attempts WHERE job_id = $1 AND attempt = 1) AS node""",
                    job_id,
                )
                assert row is not None
                if math.isnan(result.lease_s) and row["holder"] not in (None, result.killed):
                    result.lease_s = time.time() - t_kill
                if row["started"] is not None:
                    result.start_s = row["started"] / 1e6 - t_kill
                    result.ran_on = row["node"] or "?"
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    async def stats() -> None:
        async with httpx.AsyncClient(base_url=via.base_url, timeout=10.0) as http:
            while math.isnan(result.stats_s):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    asked = time.monotonic()
                    response = await http.get("/stats")
                    result.slowest_stats_s = max(result.slowest_stats_s, time.monotonic() - asked)
                    leader = response.json().get("leader")
                    if leader not in (None, result.killed):
                        result.stats_s, result.new_leader = time.time() - t_kill, str(leader)
                await asyncio.sleep(0.05)

    await asyncio.gather(database(), stats())


def save(cb: ClusterBench, path: Path) -> None:
    path.write_text(json.dumps(dataclasses.asdict(cb), indent=1))


def load(path: Path) -> ClusterBench:
    raw = json.loads(path.read_text())
    spreads = [Spread(**s) for s in raw.pop("spreads")]
    rounds = [FailoverRound(**r) for r in raw.pop("rounds")]
    return ClusterBench(**raw, spreads=spreads, rounds=rounds)


def cluster_benchmark(
    pg: PgServer,
    workdir: Path,
    *,
    jobs: int = CLUSTER_JOBS,
    batch: int = CLUSTER_BATCH,
    rounds: int = FAILOVER_ROUNDS,
    lease_s: float = LEASE_SECONDS,
) -> ClusterBench:
    """The three drains (plain node, one clustered node, three clustered nodes) and the failover rounds on the
    three nodes; each configuration on its own fresh database, its processes stopped before the next."""
    out = ClusterBench(jobs, batch, lease_s, load_before=os.getloadavg()[0])
    t0 = time.monotonic()
    secret = secrets.token_hex(20)  # 40 characters
    configs: list[tuple[str, tuple[str, ...], str | None]] = [
        ("single", ("single",), None),
        ("cluster1", CLUSTER_NODES[:1], secret),
        ("cluster3", CLUSTER_NODES, secret),
    ]
    for label, names, key in configs:
        group = Nodes(pg.database(label), workdir, lease_s, key)
        try:
            for name in names:
                group.start(name)
            if len(names) > 1:
                out.idle_start_ms = idle_starts(group)
            out.spreads.append(spread(label, group, pg, jobs, batch))
            if len(names) > 1 and rounds > 0:
                out.rounds = failover(group, rounds)
        except BaseException:
            for svc in group.all:
                if svc.process is not None and svc.exit_code is None:
                    print(f"--- {svc.log_path.name} tail ---\n{svc.log_tail(2000)}", file=sys.stderr)
            raise
        finally:
            group.stop()
    out.duration_s = time.monotonic() - t0
    out.load_after = os.getloadavg()[0]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="taskq cluster benchmark: spread, dispatch rate and failover")
    parser.add_argument("--jobs", type=int, default=CLUSTER_JOBS, help="jobs per drain")
    parser.add_argument("--batch", type=int, default=CLUSTER_BATCH, help="jobs per POST /jobs/batch")
    parser.add_argument("--rounds", type=int, default=FAILOVER_ROUNDS, help="leader kills (0: none)")
    parser.add_argument("--lease", type=float, default=LEASE_SECONDS, help="TASKQ_LEADER_LEASE_SECONDS")
    parser.add_argument("--output", type=Path, help="also write the section (markdown) there")
    parser.add_argument("--json", type=Path, help="also save the measurements there (JSON)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="measure nothing: render a saved --json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from .bottlenecks import cluster_bottlenecks
    from .render_cluster import render_cluster

    if args.render is not None:
        result = load(args.render)
    else:
        pg = PgServer()
        workdir = Path(tempfile.mkdtemp(prefix="taskq-bench-cluster-"))
        try:
            pg.start()
            log(f"PostgreSQL {pg.version} ({pg.kind})")
            result = cluster_benchmark(
                pg, workdir, jobs=args.jobs, batch=args.batch, rounds=args.rounds, lease_s=args.lease
            )
        except BaseException:
            log(f"the nodes' logs are kept in {workdir}")
            raise
        finally:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if args.json is not None:
            save(result, args.json)
            log(f"saved {args.json}")
    lines: list[str] = []
    render_cluster(result, lines.append)
    lines += [f"- {line}" for line in cluster_bottlenecks(result, os.cpu_count() or 0)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output is not None:
        args.output.write_text(text)
        log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
