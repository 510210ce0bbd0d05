"""Report section: the cluster, three nodes on one database beside one node, and the leader's failover."""

from __future__ import annotations

import math

from .cluster import JOB_TYPE, ClusterBench, Spread, summary
from .common import ms, pct, table
from .drain import DRAIN_NEEDS
from .results import Add, us

FAILOVER_SLACK_S = 1.5  # the expected bound is the lease plus this (see the paragraph below)
LABELS = {
    "single": "plain single node (no secret)",
    "cluster1": "1 clustered node (alone)",
    "cluster3": "3 clustered nodes",
}


def _per_node(counts: dict[str, int], jobs: int) -> str:
    return ", ".join(f"{name} {n:,} ({100 * n / jobs:.0f}%)" for name, n in sorted(counts.items()))


def _spread_row(s: Spread) -> list[str]:
    return [
        LABELS.get(s.label, s.label),
        f"**{s.throughput:,.0f} jobs/s**",
        f"{s.span_s:.2f} s",
        f"{s.submit_s:.2f} s / {s.total_s:.2f} s",
        _per_node(s.per_node, s.attempts),
        _per_node(s.submitted_via, s.jobs),
        f"**{us(s.leader_scheduler_cpu_s / s.jobs)}** ({s.leader})",
        us(s.standby_scheduler_cpu_s / s.jobs) if s.nodes > 1 else "-",
        us(s.service_cpu_s / s.jobs),
        us(s.pg_cpu_s / s.jobs),
        f"{ms(pct(s.wait_s, 50), 0)} / {ms(pct(s.wait_s, 95), 0)}",
        f"{s.peak_running}",
        f"{100 * s.machine_busy:.0f}%",
    ]


def render_cluster(cb: ClusterBench | None, add: Add, note: str = "") -> None:
    add("## 9. Cluster: three nodes on one database\n")
    if cb is None:
        add("Not measured in this run" + (f": {note}" if note else "") + ".\n")
        return
    capacity = "64 CPU units / 65536 MB"
    add(
        f"Run by `python -m scripts.bench.cluster` (alone) or as part of `make bench`; {cb.duration_s:.0f} s, "
        f"1-minute load average {cb.load_before:.2f} before it and {cb.load_after:.2f} after it. Each "
        f"configuration has its own fresh database; every node declares {capacity} (`TASKQ_CPU_UNITS=64`), so "
        "slots are never the limit. Clustered nodes share a 40-character `TASKQ_CLUSTER_SECRET`, are named by "
        f"`TASKQ_NODE_NAME` and run with `TASKQ_LEADER_LEASE_SECONDS={cb.lease_s:g}` (the default is 5).\n"
    )
    add("### Spread and dispatch rate\n")
    add(
        f"{cb.jobs:,} `{JOB_TYPE}` jobs (`duration_seconds: 0`, {DRAIN_NEEDS['cpu_units']} CPU / "
        f"{DRAIN_NEEDS['memory_mb']} MB, a reused worker) sent as `POST /jobs/batch` requests of {cb.batch}, one "
        "client, round robin through every node's API (the non-leaders' too), then drained. **Drain rate = jobs / "
        "(last `jobs.finished_at` − first `attempts.started_at`)**; where the jobs ran is `attempts.node`. CPU is "
        "psutil's, by process title, over first batch sent → all succeeded, divided by the jobs: the leading "
        "node's scheduler process (the one that places every job), the other nodes' scheduler processes (standby "
        "candidates that relay their node's supervisor and API links to the leader), and every process of every "
        "node (API, schedulers, supervisors, zygotes, workers).\n"
    )
    add(
        table(
            [
                "configuration",
                "drain rate",
                "first start → last finish",
                "batches sent / first send → last finish",
                "ran on (`attempts.node`)",
                "submitted through",
                "leader's scheduler CPU/job",
                "standby schedulers CPU/job",
                "all nodes' processes CPU/job",
                "PostgreSQL CPU/job",
                "created → start p50 / p95",
                "peak running",
                "machine busy",
            ],
            [_spread_row(s) for s in cb.spreads],
        )
    )
    add("")
    if cb.idle_start_ms:
        add("### One job at a time on the idle cluster\n")
        add(
            "Each job submitted alone (`POST /jobs`, waiting for it to succeed before the next) on the idle "
            "three-node cluster, through the leading node's API and through another node's, whose notice reaches "
            "the leader over the relayed link. Commit (`jobs.created_at`) → dispatch (`attempts.started_at`), "
            "both written by PostgreSQL's clock.\n"
        )
        add(
            table(
                ["submitted", "jobs", "p50", "p95", "max"],
                [
                    [label, str(len(ms)), f"{pct(ms, 50):.2f} ms", f"{pct(ms, 95):.2f} ms", f"{max(ms):.2f} ms"]
                    for label, ms in cb.idle_start_ms.items()
                    if ms
                ],
            )
        )
        add("")
    add("### Failover of the leader\n")
    if not cb.rounds:
        add("Not run (`--rounds 0`).\n")
    else:
        render_failover(cb, add)
    add("### What these figures mean\n")
    add(
        "Three nodes on one 2-CPU machine share the same two CPUs and the same PostgreSQL, so the cluster cannot "
        "drain faster than one node here: one scheduler places every job whatever the number of nodes, the "
        "executors' work is the same in total, and each extra node adds its own API, standby scheduler (a relay), "
        "supervisor and zygote competing for the CPUs. What the three-node row shows is the price of clustering "
        "(the leader's CPU per job, which includes sending each placement over a TCP link instead of a Unix "
        "socket, and the relays' CPU) and that the leader spreads the jobs over every node whichever API they were "
        "submitted through. Jobs wait less from creation to start with three nodes only because three nodes offer "
        "three times the slots (see peak running), not because they run faster. Throughput from more nodes needs "
        "more machines (and, past that, a faster single "
        "scheduler and PostgreSQL: both are still one process each). The one-clustered-node row isolates the cost "
        "of the lease, fencing and node bookkeeping without any network hop. The failover time is bounded by the "
        "lease: the dead leader's lease lapses at most one lease after its last renewal (renewed every "
        f"min(1 s, lease/3)), a candidate reads the lease every 0.5 s, then the new leader rebuilds its state from "
        "the database and the supervisors reconnect (Hello) before its first dispatch; hence about lease + "
        f"{FAILOVER_SLACK_S:g} s. Running jobs are not lost meanwhile: an executor keeps running its attempts for "
        "2 × lease + 2 s without a leader.\n"
    )


def render_failover(cb: ClusterBench, add: Add) -> None:
    rounds = cb.rounds
    bound = cb.lease_s + FAILOVER_SLACK_S
    add(
        f"{len(rounds)} {'time' if len(rounds) == 1 else 'times'}, with three nodes up and connected: SIGKILL to the "
        "leading node's whole process group "
        "(`os.killpg`: root, scheduler, supervisor, zygote; its API and workers, in process groups of their own, "
        "die with their parents by PR_SET_PDEATHSIG; nothing drained), then at once one "
        f"`POST /jobs` ({JOB_TYPE}, `duration_seconds: 0`) through a surviving node. Timed from the wall clock just "
        "before the kill: the `scheduler_lease` row held by another node and the survivor's `GET /stats` naming a "
        "new `leader` (both polled every 50 ms and timed when the answer is in, so upper bounds), and the job's "
        "`attempts.started_at` (PostgreSQL's clock, the same host: the new leader's first dispatch). The killed "
        "node is then restarted under the same `TASKQ_NODE_NAME` on a new port, and the next round waits until "
        "`/stats` shows all three `connected`. "
        f"**Lease {cb.lease_s:g} s (`TASKQ_LEADER_LEASE_SECONDS={cb.lease_s:g}`); expected bound lease + "
        f"{FAILOVER_SLACK_S:g} s = {bound:g} s.**\n"
    )
    rows = []
    for label, values in (
        ("kill → the survivor's `POST /jobs` answered 201 (no leader yet)", [r.submit_s for r in rounds]),
        ("kill → the lease row held by another node", [r.lease_s for r in rounds]),
        ("kill → a survivor's `/stats` names the new leader", [r.stats_s for r in rounds]),
        ("**kill → the job submitted at the kill started** (`attempts.started_at`)", [r.start_s for r in rounds]),
        ("restart of the killed node → all three connected again", [r.rejoin_s for r in rounds]),
    ):
        p50, top, n = summary(values)
        rows.append(
            [label, _s(p50), _s(top), _s(min((v for v in values if not math.isnan(v)), default=math.nan)), f"{n:.0f}"]
        )
    add(table(["span", "p50", "max", "min", "rounds"], rows))
    add("")
    start_max = summary([r.start_s for r in rounds])[1]
    verdict = "within" if start_max <= bound else "**beyond**"
    after_lease = summary([r.start_s - r.lease_s for r in rounds])[0]
    stats_lag = summary([r.stats_s - r.lease_s for r in rounds])
    slowest = max(r.slowest_stats_s for r in rounds)
    add(
        f"Worst kill → first dispatch {_s(start_max)}: {verdict} the expected {bound:g} s. The job started "
        f"{_s(after_lease)} (p50) after the lease was seen to move: the new leader's rebuild and the survivors' "
        "supervisors relinking cost little. A survivor's `/stats` named the new leader later, "
        f"{_s(stats_lag[0])} (p50; max {_s(stats_lag[1])}) after the lease moved, and one `/stats` took up to "
        f"{_s(slowest)} to answer meanwhile: the node's API link to its scheduler, refused while no leader is "
        "known, retries with a doubling delay capped at 1 s (reconnects ≈0.05, 0.15, 0.35, 0.75, 1.55, 2.55 s "
        "after the kill), so `/stats` and that API's view of the leader lag by up to a second; the dispatch of "
        "submitted jobs does not wait for it. Leaders killed in turn: "
        + ", ".join(f"{r.killed} → {r.new_leader} (job ran on {r.ran_on})" for r in rounds)
        + ".\n"
    )


def _s(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.2f} s"
