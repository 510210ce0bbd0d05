"""The pure cron module: next fire times (with the DST transitions), catch-up after downtime, overlap,
and what a pass plans, all on explicit epoch times (no clock)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from service.scheduler import cron
from service.scheduler.cron import Schedule

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args: int, tz: ZoneInfo = BERLIN) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def local(ticks: Iterable[float], tz: ZoneInfo = BERLIN) -> list[str]:
    return [datetime.fromtimestamp(t, tz).isoformat() for t in ticks]


def first(n: int, cron_text: str, timezone: str, after: float) -> list[float]:
    found = []
    for tick in cron.ticks_after(cron_text, timezone, after):
        found.append(tick)
        if len(found) == n:
            break
    return found


def schedule(**fields: object) -> Schedule:
    base: dict[str, object] = {
        "schedule_id": "s",
        "cron": "* * * * *",
        "timezone": "UTC",
        "overlap": "allow",
        "catch_up": "none",
        "paused": False,
        "checked_through": 0.0,
    }
    return Schedule(**{**base, **fields})  # type: ignore[arg-type]


def nothing_live(job_id: str) -> bool:
    return False


# --------------------------------------------------------------------------------------- expressions


def test_a_daily_0230_schedule_fires_at_0300_on_the_spring_forward_day_in_berlin() -> None:
    # 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST, so 02:30 does not exist that day.
    ticks = first(3, "30 2 * * *", "Europe/Berlin", at(2026, 3, 28, 12, 0))
    assert local(ticks) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_daily_0230_schedule_fires_once_on_the_fall_back_day_in_berlin() -> None:
    # 2026-10-25: 02:00-03:00 happens twice (CEST, then CET); a daily job runs at the first one only.
    ticks = first(3, "30 2 * * *", "Europe/Berlin", at(2026, 10, 24, 12, 0))
    assert local(ticks) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_resuming_inside_the_repeated_hour_does_not_fire_the_daily_tick_again() -> None:
    first_0230 = at(2026, 10, 25, 0, 30, tz=ZoneInfo("UTC"))  # 02:30 CEST
    inside_second_hour = first_0230 + 3600 - 15 * 60  # 02:15 CET, after the first 02:30
    assert local(first(1, "30 2 * * *", "Europe/Berlin", inside_second_hour)) == ["2026-10-26T02:30:00+01:00"]


def test_an_hourly_schedule_counts_real_hours_through_the_fall_back_night() -> None:
    ticks = first(4, "30 * * * *", "Europe/Berlin", at(2026, 10, 25, 0, 0))
    assert local(ticks) == [
        "2026-10-25T00:30:00+02:00",
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",
    ]


@pytest.mark.parametrize(
    ("alias", "same_as"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@YEARLY", "0 0 1 1 *"),
    ],
)
def test_aliases_fire_as_their_five_field_forms(alias: str, same_as: str) -> None:
    start = at(2026, 5, 17, 13, 45)
    assert first(3, alias, "Europe/Berlin", start) == first(3, same_as, "Europe/Berlin", start)


def test_a_six_field_expression_has_a_seconds_field_first() -> None:
    start = at(2026, 1, 1, 0, 0, 0, tz=ZoneInfo("UTC"))
    assert [t - start for t in first(3, "* * * * * *", "UTC", start)] == [1.0, 2.0, 3.0]
    assert [t - start for t in first(2, "*/20 * * * * *", "UTC", start)] == [20.0, 40.0]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("every day", "has 2 fields"),
        ("* * *", "has 3 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "Bad minute"),
        ("0 25 * * *", "Bad hour"),
        ("0 0 30 2 *", "Bad day-of-month"),
        ("@fortnightly", "unknown alias"),
        ("", "has 0 fields"),
    ],
)
def test_bad_expressions_are_refused_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(cron.CronError, match=says):
        cron.expression(text)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "Europe/berlin ", "../../etc/passwd", "", "UTC\x00"])
def test_unknown_timezones_are_refused(name: str) -> None:
    with pytest.raises(cron.CronError, match="unknown timezone"):
        cron.zone(name)


def test_next_fire_times_are_in_the_schedules_timezone() -> None:
    times = cron.next_fire_times("0 9 * * 1-5", "Europe/Berlin", at(2026, 6, 5, 10, 0), 2)  # a Friday
    assert [t.isoformat() for t in times] == ["2026-06-08T09:00:00+02:00", "2026-06-09T09:00:00+02:00"]


def test_a_ticks_job_id_is_the_schedule_and_the_tick_in_utc() -> None:
    assert cron.job_id("nightly", at(2026, 3, 29, 3, 0)) == "nightly:2026-03-29T01:00:00Z"


def test_latest_tick_includes_the_instant_itself() -> None:
    assert cron.latest_tick("0 * * * *", "UTC", 7200.0) == 7200.0
    assert cron.latest_tick("0 * * * *", "UTC", 7199.5) == 3600.0


# ------------------------------------------------------------------------------------------- planning


def test_each_tick_since_the_last_pass_fires_once_and_the_pass_wakes_at_the_next_tick() -> None:
    s = schedule(cron="* * * * * *", checked_through=100.0)
    plan = cron.plan([s], live=nothing_live, since=50.0, now=103.5)
    assert [f.tick for f in plan.fires] == [101.0, 102.0, 103.0]
    assert [f.job_id for f in plan.fires] == [cron.job_id("s", t) for t in (101.0, 102.0, 103.0)]
    assert plan.wake_at == 104.0
    (advance,) = plan.advances
    assert advance.checked_through == 103.0
    assert advance.last == plan.fires[-1]


def test_a_replanned_pass_after_the_plan_is_applied_fires_nothing_again() -> None:
    schedules = [schedule(cron="* * * * * *", checked_through=100.0)]
    plan = cron.plan(schedules, live=nothing_live, since=50.0, now=103.5)
    again = cron.plan(plan.applied(schedules), live=nothing_live, since=50.0, now=103.5)
    assert again.fires == []
    assert again.advances == []


MISSED = [660.0, 720.0, 780.0, 840.0, 900.0, 960.0, 1020.0, 1080.0, 1140.0, 1200.0]


@pytest.mark.parametrize(
    ("catch_up", "fired_missed"),
    [("none", []), ("one", [1200.0]), ("all", MISSED)],
)
def test_catch_up_decides_the_ticks_missed_while_no_scheduler_ran(catch_up: str, fired_missed: list[float]) -> None:
    # Decided through 600; no scheduler ran until 1250 (minutes 660-1200 were missed); it is now 1310,
    # and the minute 1260 fell due after the scheduler came back: that one fires whatever catch_up says.
    s = schedule(cron="* * * * *", catch_up=catch_up, checked_through=600.0)
    plan = cron.plan([s], live=nothing_live, since=1250.0, now=1310.0)
    assert [f.tick for f in plan.fires] == [*fired_missed, 1260.0]
    assert plan.advances[0].checked_through == 1260.0
    assert plan.wake_at == 1320.0


def test_catch_up_none_still_fires_every_tick_after_the_scheduler_came_back() -> None:
    s = schedule(cron="* * * * * *", catch_up="none", checked_through=100.0)
    plan = cron.plan([s], live=nothing_live, since=110.5, now=113.0)
    assert [f.tick for f in plan.fires] == [111.0, 112.0, 113.0]
    assert plan.advances[0].checked_through == 113.0


def test_catch_up_none_with_only_missed_ticks_records_them_as_decided() -> None:
    s = schedule(cron="* * * * * *", catch_up="none", checked_through=100.0)
    plan = cron.plan([s], live=nothing_live, since=110.5, now=110.9)
    assert plan.fires == []
    assert plan.advances[0].checked_through == 110.0
    assert plan.advances[0].last is None


def test_catch_up_all_is_bounded_per_pass_and_the_next_pass_follows_at_once() -> None:
    s = schedule(cron="* * * * * *", catch_up="all", checked_through=0.0)
    plan = cron.plan([s], live=nothing_live, since=5000.0, now=5000.0, limit=1000)
    assert [f.tick for f in plan.fires] == [float(t) for t in range(1, 1001)]
    assert plan.wake_at == 5000.0
    rest = cron.plan(plan.applied([s]), live=nothing_live, since=5000.0, now=5000.0, limit=1000)
    assert rest.fires[0].tick == 1001.0


def test_overlap_skip_passes_ticks_over_while_the_previous_job_is_live() -> None:
    s = schedule(cron="* * * * * *", overlap="skip", checked_through=100.0, last_job_id="s:prev")
    still_running = cron.plan([s], live=lambda job_id: job_id == "s:prev", since=0.0, now=103.0)
    assert still_running.fires == []
    assert still_running.advances[0].checked_through == 103.0  # the skipped ticks are decided
    finished = cron.plan([s], live=nothing_live, since=0.0, now=103.0)
    assert [f.tick for f in finished.fires] == [101.0]  # the first fires; it is live for the other two


def test_overlap_allow_fires_every_tick_whatever_is_live() -> None:
    s = schedule(cron="* * * * * *", overlap="allow", checked_through=100.0, last_job_id="s:prev")
    plan = cron.plan([s], live=lambda job_id: True, since=0.0, now=103.0)
    assert [f.tick for f in plan.fires] == [101.0, 102.0, 103.0]


def test_a_paused_schedule_fires_nothing_and_needs_no_wake_up() -> None:
    s = schedule(cron="* * * * * *", paused=True, checked_through=100.0)
    plan = cron.plan([s], live=nothing_live, since=0.0, now=200.0)
    assert (plan.fires, plan.advances, plan.wake_at) == ([], [], None)


def test_the_pass_wakes_for_the_earliest_schedule() -> None:
    hourly = schedule(schedule_id="h", cron="@hourly", checked_through=0.0)
    minutely = schedule(schedule_id="m", cron="* * * * *", checked_through=0.0)
    plan = cron.plan([hourly, minutely], live=nothing_live, since=0.0, now=30.0)
    assert plan.wake_at == 60.0


def test_ticks_are_whole_seconds_so_job_ids_never_carry_fractions() -> None:
    s = schedule(cron="* * * * * *", checked_through=100.25)
    plan = cron.plan([s], live=nothing_live, since=0.0, now=101.75)
    assert [f.job_id for f in plan.fires] == [f"s:{datetime.fromtimestamp(101, UTC):%Y-%m-%dT%H:%M:%SZ}"]
