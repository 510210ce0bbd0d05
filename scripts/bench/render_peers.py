"""Report section: taskq beside the peer queues measured in the same sitting, with taskq / best-peer ratios."""

from __future__ import annotations

from .common import pct, ratio, table
from .drain import DRAIN_CAPACITY
from .peers import PEER_ORDER
from .results import Add, Run


def render_peers(run: Run, add: Add) -> None:
    pr = run.peers
    add("## 8. Peers, in the same sitting\n")
    if not pr.results:
        if pr.started:
            add(
                f"The peers' harness (`{pr.script}`) was run (REPS={pr.reps}) but wrote no results in this sitting"
                + (f": {pr.note}" if pr.note else "")
                + ". No peer figures are quoted.\n"
            )
        else:
            add(
                "The peers were not run in this sitting (run `make bench PEERS=1` to measure them right after taskq); "
                "no peer figures are quoted"
                + (
                    f". Older results exist ({', '.join(pr.stale)}) but ratios across sittings on a shared machine "
                    "mean nothing, so they are not used.\n"
                    if pr.stale
                    else ".\n"
                )
            )
        return
    peers = [p for p in PEER_ORDER if p in pr.results]
    add(
        f"`REPS={pr.reps} {pr.script} peers`, run right after taskq's measurements ({pr.seconds:.0f} s). Each peer "
        "runs on an embedded PostgreSQL 16 of its own (Celery on Redis) with the same workload: 10k no-op jobs "
        "enqueued one at a time from one client and in bulk, 10k pre-enqueued jobs drained with concurrency 8, "
        "and the idle enqueue → job body start latency over 200 jobs. Peer figures are the median of their runs as "
        "the harness's own table shows them. **Ratio = taskq / best peer**: above 1 is better for rates, below 1 "
        "is better for latencies.\n"
    )
    seq, bat, lat = run.sequential, run.batches, run.latency
    # The peers' endpoint is the job body's start: the handler's first line when PostgreSQL has it.
    send_start = lat.span("sent", "body")
    endpoint = "client send → the handler's first line (`job_logs.at`)"
    if len(send_start) < len(lat.jobs):
        send_start = lat.span("sent", "started")
        endpoint = "client send → `attempts.started_at` (the handler's first line was not found)"
    rows: list[tuple[str, float, str, bool, str]] = [
        # (metric, taskq value, peer key, higher is better, taskq's measurement)
        ("enqueue one at a time, one client (jobs/s)", seq.rate, "enq_single", True, "section 1, sequential POSTs"),
        (
            "enqueue in bulk (jobs/s)",
            bat.result.rate,
            "enq_bulk",
            True,
            f"section 1: {bat.result.clients} clients, batches of {bat.result.batch_size} (peers: one 10k call)",
        ),
    ]
    for job_type, how in (
        ("tiny_task", "reused worker"),
        ("quick_task", "fresh process per job"),
    ):
        d = run.drains.get(job_type)
        if d:
            rows.append(
                (
                    f"process 10k no-op jobs (jobs/s) — taskq `{job_type}`",
                    d.throughput,
                    "proc",
                    True,
                    f"section 3, {how}, {DRAIN_CAPACITY['cpu_units']} slots (peers: concurrency 8)",
                )
            )
    rows += [
        (
            "idle latency p50 (ms)",
            pct(send_start, 50) * 1000,
            "lat_p50_ms",
            False,
            f"section 2, {endpoint} (peers: enqueue call → job body start)",
        ),
        ("idle latency p95 (ms)", pct(send_start, 95) * 1000, "lat_p95_ms", False, "same"),
    ]
    out = []
    for label, mine, key, higher, how in rows:
        values = {p: pr.value(p, key) for p in peers}
        present = {p: v for p, v in values.items() if v is not None}
        best = (max if higher else min)(present, key=lambda p: present[p]) if present else None
        cells = [
            f"{values[p]:,.2f}"
            if key.startswith("lat") and values[p] is not None
            else (f"{values[p]:,.0f}" if values[p] is not None else "n/a")
            for p in peers
        ]
        fmt = "{:,.2f}" if key.startswith("lat") else "{:,.0f}"
        out.append(
            [
                label,
                f"**{fmt.format(mine)}**",
                *cells,
                best or "n/a",
                f"**{ratio(mine, present[best]):.2f}×**" if best else "n/a",
                how,
            ]
        )
    add(table(["metric", "taskq", *peers, "best peer", "taskq / best peer", "taskq measured as"], out))
    add("")
    for p in peers:
        info = pr.results[p]
        versions = ", ".join(f"{k} {v}" for k, v in info.get("version", {}).items())
        add(f"- {p}: {versions}; runs={len(info['runs'])}; {info.get('note', '')}")
    if pr.stale:
        add(f"- Not from this sitting, not quoted: {', '.join(pr.stale)}")
    add("")
