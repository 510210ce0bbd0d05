"""Per-type controls end to end: PATCH /types pauses and resumes a type (its jobs keep their place),
max_starts_per_second measured from the recorded start times, max_running, and GET /types."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import Service, wait_until


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def set_type(service: Service, job_type: str, **controls: Any) -> dict[str, Any]:
    response = service.http.patch(f"/types/{job_type}", json=controls)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def types(service: Service) -> dict[str, dict[str, Any]]:
    response = service.http.get("/types")
    assert response.status_code == 200, response.text
    return {t["type"]: t for t in response.json()}


def test_pausing_a_type_holds_its_jobs_in_place_while_others_run_and_resume_runs_them_in_order(
    service_factory: Any,
) -> None:
    service = service_factory(TASKQ_CPU_UNITS="1").start()  # one at a time: starts follow the queue order
    paused = set_type(service, "data_export", paused=True)
    assert paused["paused"] is True
    held = [service.submit(type="data_export", job_id=f"export-{i}", payload={"duration_seconds": 0}) for i in range(3)]
    other = service.submit(type="quick_task", payload={"duration_seconds": 0})
    service.wait_status(other["job_id"], "succeeded")  # submitted after them, it is not held behind them
    for job in held:
        explained = service.http.get(f"/jobs/{job['job_id']}/explain").json()
        assert explained["status"] == "pending"
        assert explained["type_control"] == "type paused"
        assert explained["reason"].startswith("type paused")
    listed = types(service)["data_export"]
    assert listed["paused"] is True
    assert listed["jobs"]["pending"] == 3
    set_type(service, "data_export", paused=False)
    done = [service.wait_status(job["job_id"], "succeeded") for job in held]
    starts = [ts(job["started_at"]) for job in done]
    assert starts == sorted(starts)  # in their original order
    assert types(service)["data_export"]["paused"] is False


def test_max_starts_per_second_holds_over_every_window_of_the_recorded_start_times(service: Service) -> None:
    rate = 4.0
    set_type(service, "notification", max_starts_per_second=rate)
    jobs = [service.submit(type="notification", payload={"duration_seconds": 0}) for _ in range(16)]
    done = [service.wait_status(job["job_id"], "succeeded", timeout=60) for job in jobs]
    starts = sorted(ts(job["started_at"]) for job in done)
    burst = max(1.0, rate)
    slack = 0.002 * rate  # started_at is shown to the millisecond
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            assert j - i + 1 <= burst + rate * (starts[j] - starts[i]) + slack, (i, j, starts)
    set_type(service, "notification", max_starts_per_second=None)
    assert types(service)["notification"]["max_starts_per_second"] is None


def test_max_running_is_never_exceeded(service: Service, tmp_path: Path) -> None:
    set_type(service, "report", max_running=2)
    release = tmp_path / "release"
    jobs = [
        service.submit(type="report", payload={"release_file": str(release), "duration_seconds": 0}) for _ in range(5)
    ]
    wait_until(lambda: types(service)["report"]["jobs"]["running"] == 2, what="two report jobs running")
    listed = types(service)["report"]
    assert (listed["max_running"], listed["jobs"]["running"], listed["jobs"]["pending"]) == (2, 2, 3)
    release.touch()
    done = [service.wait_status(job["job_id"], "succeeded") for job in jobs]
    intervals = sorted((ts(j["started_at"]), ts(j["finished_at"])) for j in done)
    for start, _ in intervals:  # at each start, at most two attempts hold the type (this one included)
        assert sum(1 for s, f in intervals if s <= start < f) <= 2


def test_controls_survive_a_restart(service_factory: Any, database_url: str) -> None:
    first = service_factory(database_url).start()
    set_type(first, "analysis", paused=True, max_running=3)
    assert first.stop() == 0
    second = service_factory(database_url).start()
    job = second.submit(type="analysis", payload={"duration_seconds": 0})
    explained = second.http.get(f"/jobs/{job['job_id']}/explain").json()
    assert explained["type_control"] == "type paused"
    listed = types(second)["analysis"]
    assert (listed["paused"], listed["max_running"]) == (True, 3)
    set_type(second, "analysis", paused=False)
    second.wait_status(job["job_id"], "succeeded")


def test_get_types_lists_every_registered_type(service: Service) -> None:
    listed = types(service)
    assert {"quick_task", "send_email", "tiny_task", "invalid_operation"} <= set(listed)
    assert listed["send_email"] == {
        "type": "send_email",
        "registered": True,
        "paused": False,
        "max_running": None,
        "max_starts_per_second": None,
        "jobs": {"blocked": 0, "pending": 0, "scheduled": 0, "running": 0},
    }
