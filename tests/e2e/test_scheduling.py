"""Scheduling over HTTP on the real service: dependency DAGs, resources, backfill, run_at, explain."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests import scenarios
from tests.conftest import Service, wait_until


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def interval(job: dict[str, Any]) -> tuple[float, float]:
    attempt = job["attempts"][-1]
    return ts(attempt["started_at"]), ts(attempt["finished_at"])


def peak_usage(jobs: list[dict[str, Any]]) -> tuple[int, int]:
    """Peak concurrent cpu and memory from the attempts' intervals (ends before starts at equal times)."""
    events = []
    for job in jobs:
        need = job["resource_requirements"]
        for attempt in job["attempts"]:
            events.append((ts(attempt["started_at"]), 1, need["cpu_units"], need["memory_mb"]))
            events.append((ts(attempt["finished_at"]), 0, -need["cpu_units"], -need["memory_mb"]))
    cpu = memory = peak_cpu = peak_memory = 0
    for _, _, d_cpu, d_memory in sorted(events):
        cpu, memory = cpu + d_cpu, memory + d_memory
        peak_cpu, peak_memory = max(peak_cpu, cpu), max(peak_memory, memory)
    return peak_cpu, peak_memory


def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    (a0, a1), (b0, b1) = interval(a), interval(b)
    return a0 < b1 and b0 < a1


def test_scenario_2_chain_runs_in_dependency_order_blocked_until_parents_succeed(service: Service) -> None:
    chain = scenarios.scenario_2()
    answers = [service.submit(**job) for job in chain]
    assert [a["status"] for a in answers] == ["running", "blocked", "blocked"]
    assert service.job("process_data_001")["status"] == "blocked"
    jobs = [service.wait_status(job["job_id"], "succeeded") for job in chain]
    for parent, child in itertools.pairwise(jobs):
        assert interval(parent)[1] <= interval(child)[0]
    events = [line["event"] for line in service.http.get("/jobs/generate_report_001/logs").json()]
    assert events[:3] == ["submitted", "blocked", "ready"]


def test_scenario_2_failed_parent_fails_the_chain_without_running_it(service: Service) -> None:
    chain = scenarios.scenario_2()
    failing = {**chain[0], "payload": {"fail_times": 9}, "retry_config": {"max_attempts": 1}}
    for job in [failing, *chain[1:]]:
        service.submit(**job)
    assert service.wait_status("fetch_data_001", "failed")["attempt_count"] == 1
    child = service.wait_status("process_data_001", "upstream_failed")
    grandchild = service.wait_status("generate_report_001", "upstream_failed")
    assert child["attempts"] == []
    assert grandchild["attempts"] == []
    assert "fetch_data_001" in child["error"]
    assert "process_data_001" in grandchild["error"]
    late = service.submit(job_id="late_child", type="report", depends_on=["fetch_data_001"])
    assert late["status"] == "upstream_failed"  # a dependency that already failed: at once


def run_scenario_3(service: Service, *, as_batch: bool) -> dict[str, dict[str, Any]]:
    dag = scenarios.scenario_3()
    slow = [{**job, "payload": {"duration_seconds": scenarios.S3_DURATION}} for job in dag]
    if as_batch:
        reordered = list(reversed(slow))  # forward references inside the batch are fine
        response = service.http.post("/jobs/batch", json={"jobs": reordered})
        assert response.status_code == 201, response.text
        assert [j["job_id"] for j in response.json()["jobs"]] == [j["job_id"] for j in reordered]
    else:
        for job in slow:
            service.submit(**job)
    return {job["job_id"]: service.wait_status(job["job_id"], "succeeded") for job in dag}


def assert_scenario_3_order(jobs: dict[str, dict[str, Any]]) -> None:
    assert overlaps(jobs["fetch_prices"], jobs["fetch_volumes"])  # parallel branches run in parallel
    assert overlaps(jobs["trader_report"], jobs["risk_report"])
    for job in scenarios.scenario_3():
        for dep in job.get("depends_on", []):
            assert interval(jobs[dep])[1] <= interval(jobs[job["job_id"]])[0], (dep, job["job_id"])


def test_scenario_3_dag_submitted_one_by_one(service: Service) -> None:
    assert_scenario_3_order(run_scenario_3(service, as_batch=False))


def test_scenario_3_dag_submitted_as_one_batch(service: Service) -> None:
    assert_scenario_3_order(run_scenario_3(service, as_batch=True))


def test_scenario_4_never_exceeds_capacity_and_light_jobs_fill_gaps(service: Service) -> None:
    contention = scenarios.scenario_4()
    response = service.http.post("/jobs/batch", json={"jobs": contention})
    assert response.status_code == 201, response.text
    jobs = [service.wait_status(job["job_id"], "succeeded") for job in contention]
    by_id = {job["job_id"]: job for job in jobs}
    cpu, memory = peak_usage(jobs)
    assert cpu <= scenarios.NODE_CAPACITY["cpu_units"]
    assert memory <= scenarios.NODE_CAPACITY["memory_mb"]
    high_start = max(interval(by_id[f"heavy_{i}"])[0] for i in range(2))
    normal_start = min(interval(job)[0] for job in jobs if job["priority"] == "normal")
    assert high_start <= normal_start  # higher priority got resources first
    lights = [by_id[f"light_{i}"] for i in range(5)]
    assert any(overlaps(light, by_id["heavy_4"]) for light in lights)  # light jobs used the gap beside heavy_4


def test_backfill_starts_short_jobs_that_cannot_delay_the_blocked_head(service_factory: Any, tmp_path: Path) -> None:
    service = service_factory(TASKQ_KILL_GRACE_SECONDS="0.5").start()
    release = tmp_path / "release-runner"
    service.submit(
        job_id="runner",
        type="long_running",
        payload={"duration_seconds": 0, "release_file": str(release)},
        timeout_seconds=30,  # the planner expects it to hold its 4 units until then at the latest
        resource_requirements={"cpu_units": 4, "memory_mb": 512},
    )
    service.wait_status("runner", "running")
    head = service.submit(
        job_id="head", type="data_processing", resource_requirements={"cpu_units": 8, "memory_mb": 1024}
    )
    assert head["status"] == "pending"
    short = service.submit(
        job_id="short", type="quick_task", timeout_seconds=0.5, resource_requirements={"cpu_units": 2, "memory_mb": 128}
    )
    long = service.submit(job_id="long", type="quick_task", resource_requirements={"cpu_units": 2, "memory_mb": 128})
    assert short["status"] in ("running", "succeeded")  # ends before the head's reservation: backfilled
    assert long["status"] == "pending"  # could run past the reservation: waits its turn
    why = service.http.get("/jobs/long/explain").json()
    assert why["reservation"]["job_id"] == "head"
    assert "head" in why["reason"]
    head_why = service.http.get("/jobs/head/explain").json()
    assert head_why["needs"]["cpu_units"] == 8
    assert head_why["shortfall"]["cpu_units"] >= 4
    assert head_why["reason"].startswith("first in line")
    release.touch()
    done = {job_id: service.wait_status(job_id, "succeeded") for job_id in ("runner", "head", "short", "long")}
    assert interval(done["head"])[0] <= interval(done["long"])[0]
    assert interval(done["short"])[1] <= interval(done["head"])[0]


def test_run_at_in_the_future_is_scheduled_then_starts_on_time(service: Service) -> None:
    base = datetime.now(UTC) + timedelta(seconds=2.0)  # far enough that the submits come first
    run_ats = [base + timedelta(seconds=0.3 * i) for i in range(3)]
    jobs = [service.submit(type="notification", run_at=run_at.isoformat()) for run_at in run_ats]
    assert {job["status"] for job in jobs} == {"scheduled"}
    why = service.http.get(f"/jobs/{jobs[0]['job_id']}/explain").json()
    assert "run_at" in why["reason"]
    lateness = []
    for job, run_at in zip(jobs, run_ats, strict=True):
        done = service.wait_status(job["job_id"], "succeeded")
        lateness.append(ts(done["attempts"][0]["started_at"]) - run_at.timestamp())
    assert min(lateness) > -0.001  # never early (the API truncates timestamps to the millisecond)
    # and in run_at order; how late is a latency, measured by `make bench`, not asserted here
    starts = [ts(service.job(job["job_id"])["attempts"][0]["started_at"]) for job in jobs]
    assert starts == sorted(starts)


def test_circular_dependencies_are_impossible_one_by_one_and_rejected_in_a_batch(service: Service) -> None:
    circular = scenarios.circular()
    one = service.http.post("/jobs", json=circular[0])
    assert one.status_code == 422
    assert "job_c" in one.json()["detail"]
    batch = service.http.post("/jobs/batch", json={"jobs": circular})
    assert batch.status_code == 422
    assert "job_a -> job_c -> job_b -> job_a" in batch.json()["detail"]
    for job_id in ("job_a", "job_b", "job_c"):
        assert service.http.get(f"/jobs/{job_id}").status_code == 404


def test_batch_is_all_or_nothing(service: Service) -> None:
    bad = [
        {"job_id": "ok_1", "type": "quick_task"},
        {"job_id": "ok_2", "type": "quick_task", "depends_on": ["ghost"]},
    ]
    response = service.http.post("/jobs/batch", json={"jobs": bad})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "jobs.1.depends_on"
    assert service.http.get("/jobs/ok_1").status_code == 404
    typo = service.http.post("/jobs/batch", json={"jobs": [{"type": "quick_task"}, {"type": "nope"}]})
    assert typo.status_code == 422
    assert typo.json()["errors"][0]["field"] == "jobs.1.type"
    assert service.http.get("/jobs").json()["items"] == []


def test_children_submitted_while_parents_finish_never_stay_blocked(service: Service) -> None:
    def pair(i: int) -> str:
        with httpx.Client(base_url=service.base_url, timeout=30) as http:
            parent = http.post("/jobs", json={"type": "quick_task", "payload": {"duration_seconds": 0.005 * (i % 4)}})
            assert parent.status_code == 201, parent.text
            child = http.post("/jobs", json={"type": "quick_task", "depends_on": [parent.json()["job_id"]]})
            assert child.status_code == 201, child.text
            return str(child.json()["job_id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        children = list(pool.map(pair, range(200)))

    def all_done() -> bool:
        page = service.http.get("/jobs", params={"status": "succeeded", "limit": 500}).json()
        return len(page["items"]) == 400

    def counts() -> dict[str, int]:
        return {k: v for k, v in service.http.get("/stats").json()["jobs_by_status"].items() if v}

    wait_until(all_done, timeout=60, interval=0.2, what=f"400 jobs to succeed ({counts()})")
    for child in children[:20]:
        assert service.job(child)["attempt_count"] == 1


def test_explain_answers_why_a_job_waits(service: Service, tmp_path: Path) -> None:
    release = tmp_path / "release-parent"
    service.submit(
        job_id="slow_parent", type="data_fetch", payload={"duration_seconds": 0, "release_file": str(release)}
    )
    service.wait_status("slow_parent", "running")
    service.submit(job_id="waiting_child", type="report", depends_on=["slow_parent"])
    blocked = service.http.get("/jobs/waiting_child/explain").json()
    assert blocked["status"] == "blocked"
    assert blocked["waiting_on"] == ["slow_parent"]
    running = service.http.get("/jobs/slow_parent/explain").json()
    assert running["status"] == "running"
    assert service.http.get("/jobs/nope/explain").status_code == 404
    release.touch()
    service.wait_status("waiting_child", "succeeded")
    finished = service.http.get("/jobs/waiting_child/explain").json()
    assert finished["reason"].startswith("finished: succeeded")
