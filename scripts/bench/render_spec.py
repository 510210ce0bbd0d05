"""Report sections on the specification's own tests: the 1000-job performance test (CPU, memory, queries),
the scheduler core, the scenarios, start and stop."""

from __future__ import annotations

from service.scheduler.core import BACKFILL_DEPTH

from .common import FAR_FUTURE, PRIORITIES, mean, mib, ms, pct, ratio, table
from .core_bench import CORE_CHUNK, CORE_OPERATIONS, CORE_OPS
from .perf_test import PERF_CONCURRENCY, PERF_JOBS, PERF_SAMPLE
from .results import Add, Run, sup


def render_perf(run: Run, add: Add, n_cpu: int) -> None:
    perf = run.perf
    lat = perf.submit_lat
    add(f"## 4. Performance test: {PERF_JOBS} jobs over HTTP on the specification's node\n")
    add(
        f"{PERF_JOBS} `quick_task` jobs (`duration_seconds: 0`, 1 CPU / 64 MB, priorities drawn at random from the "
        f"four levels) sent as single `POST /jobs` requests by {PERF_CONCURRENCY} concurrent `httpx.AsyncClient` "
        "requests; then waited (polling `GET /stats`) until all had succeeded. Job timestamps are PostgreSQL's "
        "(`jobs.created_at`, `jobs.started_at`, `jobs.finished_at`, `attempts.started_at`, in microseconds); the "
        "client's send times are its wall clock.\n"
    )
    by_prio = "; ".join(
        f"{p} {ms(pct(perf.wait_by_priority.get(p, []), 50))}" for p in PRIORITIES if p in perf.wait_by_priority
    )
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
                    "submit → start (job started_at − created_at) p50 / p95 / p99",
                    f"{ms(pct(perf.wait_all, 50))} / {ms(pct(perf.wait_all, 95))} / {ms(pct(perf.wait_all, 99))}",
                ],
                [
                    "submit → first attempt's start (`attempts.started_at − created_at`) p50 / p95",
                    f"{ms(pct(perf.sample_wait, 50))} / {ms(pct(perf.sample_wait, 95))} "
                    f"({perf.sample_attempts} attempts for {PERF_JOBS} jobs)",
                ],
                ["submit → start p50 by priority", by_prio],
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
    roles = ["root", "scheduler", "supervisor", "zygote", "api", "workers", "other"]
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
    small, large = perf.jobs_at["small"], perf.jobs_at["large"]
    add(
        f"Sequential requests over one keep-alive connection, after 10 warm-up requests: with {small} rows in the jobs "
        f"table (the {PERF_JOBS} succeeded jobs and any earlier ones), then with {large}, after the submission "
        f"measurements of section 1, whose jobs have `run_at` {FAR_FUTURE} so that they stay `scheduled` "
        f"({perf.scheduled_at_large} scheduled then). "
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


def render_core(run: Run, add: Add) -> None:
    core = run.core
    add("## 5. Scheduler core micro-benchmark (no I/O)\n")
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


def render_scenarios(run: Run, add: Add) -> None:
    svc = run.svc
    add("## 6. Test scenarios\n")
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

    add("## 7. Service start and stop\n")
    add(
        table(
            ["", "value"],
            [
                ["start → `GET /health/ready` 200 (includes dbmate up)", f"{svc.ready_s:.2f} s"],
                [
                    f"SIGTERM → exit (graceful drain; {run.perf.scheduled_at_large} scheduled jobs held)",
                    f"{svc.stop_s:.2f} s",
                ],
                ["exit code", f"{svc.exit_code}" + (f" ({svc.stop_note.strip()})" if svc.stop_note else "")],
            ],
        )
    )
    add("")
