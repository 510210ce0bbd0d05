"""Cron schedules end to end, on the real service and PostgreSQL: per-second schedules (the six-field
form with a seconds field, so the tests wait seconds, not minutes) fire once per tick across a restart
and a change of leader; overlap skip while the previous run is still running; catch-up after downtime."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import PgServer, Service, wait_until

EVERY_SECOND = "* * * * * *"


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def tick_of(job_id: str) -> float:
    """The tick a schedule's job was fired for: its id is `<schedule_id>:<tick>`."""
    return ts(job_id.split(":", 1)[1])


def create(service: Service, schedule_id: str, **fields: Any) -> dict[str, Any]:
    body = {"schedule_id": schedule_id, "cron": EVERY_SECOND, "job": {"type": "quick_task"}, **fields}
    response = service.http.post("/schedules", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def schedule(service: Service, schedule_id: str) -> dict[str, Any]:
    response = service.http.get(f"/schedules/{schedule_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def jobs_of(service: Service, schedule_id: str) -> list[dict[str, Any]]:
    response = service.http.get("/jobs", params={"schedule_id": schedule_id, "limit": 500})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def ticks_of(service: Service, schedule_id: str) -> list[float]:
    return sorted(tick_of(job["job_id"]) for job in jobs_of(service, schedule_id))


def pause(service: Service, schedule_id: str) -> dict[str, Any]:
    response = service.http.patch(f"/schedules/{schedule_id}", json={"paused": True})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_every_tick_once(ticks: list[float]) -> None:
    """One job per second from the first tick to the last: none missing, none twice."""
    assert ticks, "no tick fired"
    assert len(set(ticks)) == len(ticks), ticks
    assert ticks == [ticks[0] + i for i in range(len(ticks))], ticks


def at_least(service: Service, schedule_id: str, n: int, *, after: float = 0.0) -> Callable[[], list[float]]:
    def check() -> list[float]:
        found = [t for t in ticks_of(service, schedule_id) if t > after]
        return found if len(found) >= n else []

    return check


# ------------------------------------------------------------------------------------------------- basics


def test_a_schedule_shows_its_next_fire_times_and_its_jobs_carry_its_id(service: Service) -> None:
    created = create(service, "every-second")
    assert created["paused"] is False
    assert created["overlap"] == "allow"
    assert created["catch_up"] == "none"
    assert created["job"]["type"] == "quick_task"
    times = [ts(t) for t in created["next_fire_times"]]
    assert len(times) == 5
    assert times == [times[0] + i for i in range(5)]
    ticks = wait_until(at_least(service, "every-second", 2), what="two ticks to fire")
    job = service.wait_status(f"every-second:{datetime.fromtimestamp(ticks[0], UTC):%Y-%m-%dT%H:%M:%SZ}", "succeeded")
    assert job["schedule_id"] == "every-second"
    paused = pause(service, "every-second")
    assert paused["next_fire_times"] == []
    assert paused["last_fired_at"] is not None
    assert paused["last_job_id"] is not None
    assert ts(paused["last_fired_at"]) == tick_of(paused["last_job_id"])
    listed = service.http.get("/schedules").json()
    assert [s["schedule_id"] for s in listed] == ["every-second"]
    assert service.http.delete("/schedules/every-second").status_code == 204
    assert service.http.get("/schedules/every-second").status_code == 404


def test_a_paused_schedule_fires_nothing_and_resumes_from_now(service: Service) -> None:
    create(service, "held", paused=True, catch_up="all")
    assert schedule(service, "held")["next_fire_times"] == []
    resumed = service.http.patch("/schedules/held", json={"paused": False})
    assert resumed.status_code == 200, resumed.text
    resumed_at = ts(resumed.json()["checked_through"])
    ticks = wait_until(at_least(service, "held", 2), what="ticks after the resume")
    assert min(ticks) > resumed_at  # catch_up all, yet nothing from the paused time is fired
    pause(service, "held")


# ----------------------------------------------------------------------------------- exactly once per tick


def test_a_per_second_schedule_fires_every_tick_once_across_a_restart(
    service_factory: Callable[..., Service], database_url: str
) -> None:
    first = service_factory(database_url).start()
    create(first, "steady", catch_up="all")
    before = wait_until(at_least(first, "steady", 2), what="ticks before the restart")
    assert first.stop() == 0
    stopped_at = datetime.now(UTC).timestamp()
    second = service_factory(database_url).start()
    wait_until(at_least(second, "steady", 2, after=stopped_at), what="ticks after the restart")
    pause(second, "steady")
    ticks = ticks_of(second, "steady")
    assert ticks[0] == before[0]
    assert_every_tick_once(ticks)


CLUSTER = {"TASKQ_CLUSTER_SECRET": "c" * 40, "TASKQ_LEADER_LEASE_SECONDS": "1"}


def test_two_scheduler_candidates_fire_each_tick_once_and_the_other_takes_over(
    service_factory: Callable[..., Service], database_url: str
) -> None:
    """Two nodes of a cluster: only the lease holder fires; when it stops, the other takes the lease and
    goes on from the last tick decided."""
    leader = service_factory(database_url, TASKQ_NODE_NAME="a", **CLUSTER).start()
    candidate = service_factory(database_url, TASKQ_NODE_NAME="b", **CLUSTER).start()
    create(leader, "shared", catch_up="all")
    wait_until(at_least(leader, "shared", 3), what="ticks fired by the leader")
    assert leader.stop() == 0  # it hands the lease over as it stops
    handed_over = datetime.now(UTC).timestamp()
    wait_until(at_least(candidate, "shared", 3, after=handed_over), timeout=40, what="ticks fired by the new leader")
    pause(candidate, "shared")
    assert_every_tick_once(ticks_of(candidate, "shared"))
    assert "took the scheduler lease" in candidate.logs()


# ------------------------------------------------------------------------------------------------- overlap


def test_overlap_skip_submits_nothing_while_the_previous_run_is_still_running(service: Service, tmp_path: Path) -> None:
    release = tmp_path / "release"
    job = {"type": "quick_task", "payload": {"release_file": str(release), "duration_seconds": 0}}
    create(service, "single", overlap="skip", job=job)
    (first_tick,) = wait_until(at_least(service, "single", 1), what="the first tick")
    first_id = f"single:{datetime.fromtimestamp(first_tick, UTC):%Y-%m-%dT%H:%M:%SZ}"
    service.wait_status(first_id, "running")
    # Three more ticks are decided (passed over) while the first job still runs.
    wait_until(lambda: ts(schedule(service, "single")["checked_through"]) >= first_tick + 3, what="ticks passed over")
    assert ticks_of(service, "single") == [first_tick]
    release.touch()
    service.wait_status(first_id, "succeeded")
    later = wait_until(at_least(service, "single", 1, after=first_tick + 3), what="a tick after the first job ended")
    pause(service, "single")
    assert later[0] > first_tick + 3
    for ticked in ticks_of(service, "single"):
        service.wait_status(f"single:{datetime.fromtimestamp(ticked, UTC):%Y-%m-%dT%H:%M:%SZ}", "succeeded")


def test_overlap_allow_fires_while_the_previous_run_is_still_running(service: Service, tmp_path: Path) -> None:
    release = tmp_path / "release"
    job = {"type": "quick_task", "payload": {"release_file": str(release), "duration_seconds": 0}}
    create(service, "many", overlap="allow", job=job)
    wait_until(at_least(service, "many", 3), what="three ticks while the first still runs")
    pause(service, "many")
    running = [j for j in jobs_of(service, "many") if j["status"] == "running"]
    assert len(running) >= 2
    release.touch()
    for ticked in ticks_of(service, "many"):
        service.wait_status(f"many:{datetime.fromtimestamp(ticked, UTC):%Y-%m-%dT%H:%M:%SZ}", "succeeded")


# ------------------------------------------------------------------------------------------------ catch-up


def rewind(pg: PgServer, database_url: str, schedule_id: str, seconds: int) -> None:
    """A downtime of `seconds`, as the database would hold it had the service been off that long."""
    name = urlsplit(database_url).path.lstrip("/")
    pg.psql(
        f"UPDATE schedules SET checked_through = now() - interval '{seconds} seconds' "
        f"WHERE schedule_id = '{schedule_id}'",
        database=name,
    )


HOUR = 3600
DOWNTIME = 10 * HOUR


def restart_after_hours_of_downtime(
    service_factory: Callable[..., Service], pg: PgServer, database_url: str, catch_up: str
) -> tuple[Service, float, float]:
    """An hourly schedule and ten hours of downtime (an hour boundary within the few seconds of a start is
    unlikely enough not to matter); returns the new service, the downtime's start, and when the service
    was started again."""
    first = service_factory(database_url).start()
    create(first, "hourly", cron="@hourly", catch_up=catch_up)
    assert first.stop() == 0
    down_since = datetime.now(UTC).timestamp() - DOWNTIME
    rewind(pg, database_url, "hourly", DOWNTIME)
    restarted_at = datetime.now(UTC).timestamp()
    return service_factory(database_url).start(), down_since, restarted_at


def missed(ticks: list[float], down_since: float, restarted_at: float) -> list[float]:
    return [t for t in ticks if down_since < t <= restarted_at]


def test_catch_up_all_fires_every_hour_missed_during_downtime(
    service_factory: Callable[..., Service], pg: PgServer, database_url: str
) -> None:
    service, down_since, restarted_at = restart_after_hours_of_downtime(service_factory, pg, database_url, "all")
    wait_until(lambda: len(missed(ticks_of(service, "hourly"), down_since, restarted_at)) >= 10, what="catch-up")
    pause(service, "hourly")
    ticks = missed(ticks_of(service, "hourly"), down_since, restarted_at)
    assert ticks == [restarted_at // HOUR * HOUR - HOUR * i for i in range(9, -1, -1)]


def test_catch_up_one_fires_the_latest_missed_hour_only(
    service_factory: Callable[..., Service], pg: PgServer, database_url: str
) -> None:
    service, down_since, restarted_at = restart_after_hours_of_downtime(service_factory, pg, database_url, "one")
    wait_until(lambda: missed(ticks_of(service, "hourly"), down_since, restarted_at), what="the catch-up tick")
    pause(service, "hourly")
    assert missed(ticks_of(service, "hourly"), down_since, restarted_at) == [restarted_at // HOUR * HOUR]


def test_catch_up_none_passes_the_missed_hours_over(
    service_factory: Callable[..., Service], pg: PgServer, database_url: str
) -> None:
    service, _, restarted_at = restart_after_hours_of_downtime(service_factory, pg, database_url, "none")
    # The first pass after the restart decides the missed hours: checked_through moves past them.
    wait_until(
        lambda: ts(schedule(service, "hourly")["checked_through"]) >= restarted_at // HOUR * HOUR,
        what="the missed hours to be decided",
    )
    assert ticks_of(service, "hourly") == []
    upcoming = [ts(t) for t in schedule(service, "hourly")["next_fire_times"]]
    assert upcoming[0] == (restarted_at // HOUR + 1) * HOUR
    pause(service, "hourly")


def test_a_scheduler_stopped_for_seconds_catches_every_missed_tick_up_with_all(
    service_factory: Callable[..., Service], database_url: str
) -> None:
    first = service_factory(database_url).start()
    create(first, "resumable", catch_up="all")
    wait_until(at_least(first, "resumable", 1), what="a tick before the downtime")
    assert first.stop() == 0
    stopped = datetime.now(UTC).timestamp()
    wait_until(lambda: datetime.now(UTC).timestamp() > stopped + 3, what="three ticks of downtime")
    second = service_factory(database_url).start()
    wait_until(at_least(second, "resumable", 1, after=stopped + 3), what="ticks after the downtime")
    pause(second, "resumable")
    assert_every_tick_once(ticks_of(second, "resumable"))


def test_the_sigkilled_scheduler_is_restarted_and_fires_each_tick_once(
    service_factory: Callable[..., Service], database_url: str
) -> None:
    service = service_factory(database_url).start()
    create(service, "crashy", catch_up="all")
    wait_until(at_least(service, "crashy", 2), what="ticks before the crash")
    os.kill(service.actor_pids()["scheduler"], signal.SIGKILL)
    crashed = datetime.now(UTC).timestamp()
    wait_until(at_least(service, "crashy", 2, after=crashed + 1), timeout=40, what="ticks after the restart")
    pause(service, "crashy")
    assert_every_tick_once(ticks_of(service, "crashy"))
