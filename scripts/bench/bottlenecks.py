"""Report section: bottlenecks and scaling limits, each statement computed from the run's figures."""

from __future__ import annotations

import math

from .cluster import ClusterBench
from .common import CAPACITY, mean, mib, pct, ratio
from .core_bench import CORE_OPERATIONS
from .drain import DRAIN_CAPACITY
from .perf_test import PERF_CONCURRENCY, PERF_JOBS
from .results import Run, sup


def bottlenecks(run: Run, n_cpu: int) -> list[str]:
    perf, core = run.perf, run.core
    cap_bound = CAPACITY["cpu_units"] / mean(perf.run_all) if mean(perf.run_all) > 0 else math.nan
    cpu_total = sum(v for v in perf.cpu.values() if v > 0.005) + perf.client_cpu_s
    lines = drain_bottlenecks(run, n_cpu)
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
    idle_rate = run.concurrent.load.rate
    batch_rate = run.batches.result.rate
    lines.append(
        f"**Submission**: single `POST /jobs` with {PERF_CONCURRENCY} in flight (httpx) were accepted at "
        f"{busy_rate:.0f}/s (p50 {pct(lat, 50) * 1000:.0f} ms) while the jobs were also being executed, and at "
        f"{idle_rate:.0f}/s ({run.concurrent.load.generator.split(' ')[0]}) for jobs that do not run yet. "
        f"`POST /jobs/batch` reached {batch_rate:,.0f} jobs/s, ×{ratio(batch_rate, idle_rate):.1f} the single-request "
        "rate: the cost of a single submission is mostly per request (HTTP, validation, a group commit, a scheduler "
        "notice), not per row."
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
    per_job = sched_growth / perf.scheduled_at_large if perf.scheduled_at_large else math.nan
    lines.append(
        f"**Memory**: the service tree's RSS grew by {mib(total_growth)} over the whole test; the scheduler's RSS "
        f"grew by {mib(sched_growth)} for {perf.scheduled_at_large:,} more live (scheduled) jobs, "
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
    lines += cluster_bottlenecks(run.cluster, n_cpu)
    return lines


def cluster_bottlenecks(cb: ClusterBench | None, n_cpu: int) -> list[str]:
    spreads = {s.label: s for s in cb.spreads} if cb else {}
    one, three = spreads.get("single"), spreads.get("cluster3")
    if one is None or three is None:
        return []
    leader = three.leader_scheduler_cpu_s / three.jobs
    return [
        f"**A cluster on one machine**: three nodes drained {three.throughput:,.0f} jobs/s against "
        f"{one.throughput:,.0f} for a plain node (×{ratio(three.throughput, one.throughput):.2f}), spending "
        f"{(three.service_cpu_s + three.pg_cpu_s) / three.jobs * 1e6:,.0f} µs of CPU per job (all nodes and "
        f"PostgreSQL) against {(one.service_cpu_s + one.pg_cpu_s) / one.jobs * 1e6:,.0f} µs: on {n_cpu} shared CPUs "
        "more nodes add processes, not CPUs. The leader's scheduler spent "
        f"{leader * 1e6:,.0f} µs per job (a plain node's {one.leader_scheduler_cpu_s / one.jobs * 1e6:,.0f} µs); it "
        "is one process whatever the number of nodes, so at that cost a whole CPU of its own would place at most "
        f"≈{round(ratio(1.0, leader), -2):,.0f} jobs/s, however many nodes execute them."
    ]


def drain_bottlenecks(run: Run, n_cpu: int) -> list[str]:
    lines = []
    for d in run.drains.values():
        service = {k: v for k, v in d.cpu.items() if k != "load generator"}
        per_job = sum(service.values()) / d.jobs
        top = sorted(service.items(), key=lambda kv: -kv[1])[:3]
        share = ", ".join(f"`{k}` {v / d.jobs * 1e6:,.0f} µs" for k, v in top)
        ceiling = n_cpu / per_job if per_job > 0 else math.nan
        ours = sum(service.values()) / (d.total_s * n_cpu) if d.total_s > 0 else math.nan
        slots = DRAIN_CAPACITY["cpu_units"]
        if d.peak_running < slots:
            slot_text = f"at most {d.peak_running} of {slots} slots were busy, so slots did not limit it"
        else:
            slot_text = (
                f"all {slots} slots were busy at the peak, each attempt holding its slot "
                f"{pct(d.run_s, 50) * 1000:.0f} ms at p50 because that many processes share the CPUs: the slots "
                "filled because the CPUs were slow to serve them"
            )
        lines.append(
            f"**Drain `{d.job_type}`**: {d.throughput:,.0f} jobs/s; {slot_text}. The service and PostgreSQL spent "
            f"{per_job * 1e6:,.0f} µs of CPU per job (largest: {share}); {n_cpu} CPUs at that cost carry at most "
            f"≈{ceiling:,.0f} jobs/s. During the drain taskq's processes used ≈{ours * 100:.0f}% of the machine and "
            f"the whole machine was ≈{d.machine_busy * 100:.0f}% busy (other users included)"
            + (
                ": the machine was saturated, so the rate is bound by CPU per job (and by what others took)."
                if d.machine_busy > 0.85
                else ": CPU was not saturated, so waiting (commits, hand-offs, wake-ups) set the pace."
            )
        )
    return lines
