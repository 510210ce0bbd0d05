"""Runs every measurement and writes `evaluation_results.md`; see `scripts/bench/__init__.py`.

python -m scripts.bench [--output PATH] [--core-max N] [--peers] [--peer-reps N] [--cluster-jobs N]
                        [--cluster-rounds N] [--no-cluster]

Everything started here is stopped in `finally`, by pid: each service by SIGTERM to its `taskq serve` pid
(which drains and stops its process tree), the embedded PostgreSQL by its own stop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from .cluster import CLUSTER_JOBS, FAILOVER_ROUNDS, ClusterBench, cluster_benchmark
from .common import CAPACITY, OUTPUT, log
from .core_bench import CORE_SIZES, core_benchmark
from .database import PgServer
from .drain import DRAIN_CAPACITY, DRAIN_TYPES, Drain, drain
from .latency import one_at_a_time
from .peers import not_run, run_peers
from .perf_test import grown, performance_test
from .render import render
from .results import Run
from .scenarios import run_scenarios
from .service_proc import Api, ServiceProcess
from .submit_rates import batches, concurrent_singles, sequential_round_trip
from .targets import targets


def main() -> int:
    parser = argparse.ArgumentParser(description="taskq benchmark: writes evaluation_results.md")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the report")
    parser.add_argument("--core-max", type=int, default=CORE_SIZES[-1], help="largest core benchmark size")
    parser.add_argument(
        "--peers",
        action="store_true",
        default=os.environ.get("PEERS", "") not in ("", "0"),
        help="then run the peer queues (shared/peers/run.sh) and compare (also PEERS=1)",
    )
    parser.add_argument("--peer-reps", type=int, default=int(os.environ.get("PEER_REPS", "1")))
    parser.add_argument("--cluster-jobs", type=int, default=CLUSTER_JOBS, help="jobs per cluster drain (section 9)")
    parser.add_argument("--cluster-rounds", type=int, default=FAILOVER_ROUNDS, help="leader kills (section 9)")
    parser.add_argument("--no-cluster", action="store_true", help="skip the cluster measurements (section 9)")
    args = parser.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so that the `finally` below stops what was started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = datetime.now(UTC)
    t_start = time.monotonic()
    load_before = os.getloadavg()[0]
    notes: list[str] = []
    cluster: ClusterBench | None = None
    cluster_note = "skipped (`--no-cluster`)" if args.no_cluster else ""

    log("scheduler core micro-benchmark")
    core = core_benchmark([n for n in CORE_SIZES if n <= args.core_max])

    pg = PgServer()
    svc: ServiceProcess | None = None
    api: Api | None = None
    workdir = Path(tempfile.mkdtemp(prefix="taskq-bench-"))
    try:
        log("starting PostgreSQL" + (" (external TASKQ_DATABASE_URL)" if pg.external else " (embedded)"))
        pg.start()
        log(f"PostgreSQL {pg.version}")

        # The specification's node: latency first (fresh, idle), then submission, the performance test,
        # the grown table's queries, the scenarios.
        db = pg.database("spec")
        spec_svc = svc = ServiceProcess(db.url, workdir / "service.log", CAPACITY)
        svc.start()
        log(f"service ready on {svc.base_url} in {svc.ready_s:.2f}s")
        api = Api(svc.base_url)
        latency = one_at_a_time(svc, db)
        sequential = sequential_round_trip(svc, db, pg)
        perf = performance_test(svc, db, pg, api)
        concurrent = concurrent_singles(svc, db, pg)
        if concurrent.wrk_missing:
            notes.append(
                "wrk was not found: the concurrent single-POST rate comes from the Python raw-socket generator"
            )
        batch = batches(svc, db, pg)
        grown(svc, db, api, perf, "after the submission runs (section 1)")
        scenarios = run_scenarios(api)
        api.close()
        api = None
        log("stopping the service (SIGTERM)")
        svc.stop()
        log(f"service exited with {svc.exit_code} in {svc.stop_s:.2f}s")

        # A node large enough that slots are not what the drains measure.
        drain_db = pg.database("drain")
        drain_svc = ServiceProcess(drain_db.url, workdir / "service-drain.log", DRAIN_CAPACITY)
        svc = drain_svc
        drain_svc.start()
        log(f"drain service ready on {drain_svc.base_url} ({DRAIN_CAPACITY})")
        drains: dict[str, Drain] = {t: drain(drain_svc, drain_db, pg, t) for t in DRAIN_TYPES}
        drain_svc.stop()
        log(f"drain service exited with {drain_svc.exit_code} in {drain_svc.stop_s:.2f}s")
        svc = None

        # The cluster: three nodes (and one, for comparison) on fresh databases of the same server, then the
        # leader killed ten times. It stops every node it started; a failure there costs only its section.
        if not args.no_cluster:
            log("cluster: a plain node, one clustered node, three clustered nodes, then the leader's failover")
            try:
                cluster = cluster_benchmark(pg, workdir, jobs=args.cluster_jobs, rounds=args.cluster_rounds)
            except Exception as exc:
                cluster_note = f"the cluster benchmark failed: {type(exc).__name__}: {str(exc)[:300]}"
                log(cluster_note)
                notes.append(cluster_note)
    except BaseException:
        if svc is not None:
            print(f"--- service log tail ---\n{svc.log_tail()}", file=sys.stderr)
        log(f"the services' logs are kept in {workdir}")
        raise
    finally:
        try:
            if api is not None:
                api.close()
            if svc is not None:
                svc.stop()
        finally:
            pg.stop()
    duration_s = time.monotonic() - t_start
    load_after = os.getloadavg()[0]
    peers = run_peers(args.peer_reps, workdir / "peers.log") if args.peers else not_run()
    shutil.rmtree(workdir, ignore_errors=True)

    run = Run(
        started=started,
        core=core,
        pg_version=pg.version,
        pg_kind=pg.kind,
        svc=spec_svc,
        drain_svc=drain_svc,
        latency=latency,
        sequential=sequential,
        concurrent=concurrent,
        batches=batch,
        perf=perf,
        drains=drains,
        scenarios=scenarios,
        targets=targets(sequential, concurrent, batch, drains, latency),
        peers=peers,
        duration_s=duration_s,
        load_before=load_before,
        load_after=load_after,
        notes=notes,
        cluster=cluster,
        cluster_note=cluster_note,
    )
    args.output.write_text(render(run) + "\n")
    log(f"wrote {args.output}")
    failed = [s.name for s in scenarios if not s.ok]
    if failed:
        log(f"scenarios that did not pass: {failed}")
    return 1 if failed or run.svc.exit_code != 0 or run.drain_svc.exit_code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
