"""The specification's five test scenarios and the circular-dependency bonus, driven over HTTP against the
running service and checked from the jobs' attempts. The job lists come from `tests/scenarios.py`, which
the e2e tests use too."""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests import scenarios as spec
from tests.scenarios import S3_DURATION, S4_HEAVY_SECONDS, S5_RETRY_DELAY

from .common import CAPACITY, log, ts
from .service_proc import TERMINAL, Api


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
    return int(min(line["id"] for line in api.logs(job_id) if line["event"] == "started"))


def scenario_1(api: Api) -> Scenario:
    s = Scenario(
        "1. Basic job flow",
        "critical runs first; jobs start in priority order; resource usage tracked",
    )
    jobs = spec.scenario_1()
    holder = api.submit(spec.scenario_1_holder())
    api.wait_for([holder["job_id"]], {"running"}, timeout=10)
    in_use_held = api.stats()["resources_in_use"]
    answers = [api.submit(job) for job in jobs]
    ids = [j["job_id"] for j in jobs]
    done = api.wait_for([*ids, "s1_hold_node"], TERMINAL, timeout=30)
    in_use_after = api.stats()["resources_in_use"]
    order = sorted(ids, key=lambda j: first_start_log_id(api, j))
    prio = {j["job_id"]: j["priority"] for j in jobs}
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


def scenario_2(api: Api) -> Scenario:
    s = Scenario(
        "2. Simple dependencies",
        "dependency order regardless of priority; blocked vs ready status; failed parent → dependents never run",
    )
    chain = spec.scenario_2()
    answers = [api.submit(job) for job in chain]
    child_status = api.job("process_data_001")["status"]
    ids = [j["job_id"] for j in chain]
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
            **chain[0],
            "job_id": "fetch_data_002",
            "payload": {"fail_times": 9},
            "retry_config": {"max_attempts": 1},
        },
        {**chain[1], "job_id": "process_data_002", "depends_on": ["fetch_data_002"]},
        {**chain[2], "job_id": "generate_report_002", "depends_on": ["process_data_002"]},
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


def scenario_3(api: Api) -> Scenario:
    s = Scenario("3. Complex dependency graph", "parallel branches run in parallel; every edge respected")
    dag = spec.scenario_3()
    batch = [{**job, "payload": {"duration_seconds": S3_DURATION}} for job in reversed(dag)]
    response = api.http.post("/jobs/batch", json={"jobs": batch})
    if response.status_code != 201:
        raise RuntimeError(f"POST /jobs/batch -> {response.status_code}: {response.text[:300]}")
    ids = [j["job_id"] for j in dag]
    done = api.wait_for(ids, TERMINAL, timeout=30)
    violations = [
        (dep, job["job_id"])
        for job in dag
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
    heavy_s = S4_HEAVY_SECONDS
    jobs = spec.scenario_4()
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
    delay = S5_RETRY_DELAY
    jobs = spec.scenario_5()
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
    circular = spec.circular()
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
