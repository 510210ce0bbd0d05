"""Cron schedules' timing, as pure functions: which ticks of each schedule are due, which of them fire a
job, and when to look again. No I/O and no clock: the caller passes `now`.

The scheduler actor calls `plan` between turns; the store then inserts the planned jobs and records each
schedule's `checked_through` in one transaction. A job's id is `<schedule_id>:<tick>` (the tick in UTC,
ISO 8601, to the second), so a tick fired twice (a restart mid-pass, a former leader still committing)
is the same row, which the insert skips.

Expressions are standard five-field cron, a six-field form whose first field is the second (the
seconds resolution that the tests use to run schedules in seconds, not minutes), and the aliases
`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. `cronsim` evaluates them in the schedule's IANA
timezone. Daylight saving time follows Debian cron, as cronsim implements it for expressions with a
fixed minute and hour: a time skipped by the spring-forward change fires at the first valid minute after
it (02:30 in Europe/Berlin on the last Sunday of March fires at 03:00 CEST), and a time repeated by the
fall-back change fires once, at its first occurrence. Expressions with a `*` in the minute or hour field
count real elapsed time, so `30 * * * *` fires in both 02:30s of the fall-back night, an hour apart.

What the scheduler was not running to see is "missed": ticks after a schedule's `checked_through` and at
or before `since` (the moment the current scheduler began firing). `catch_up` decides them: `none`
passes them over, `one` fires the latest of them, `all` fires each, at most `MAX_FIRES_PER_PASS` per
schedule per pass (the next pass follows at once). Ticks after `since` are never missed: each fires
once, however late the pass that sees it. `overlap: skip` passes a tick over while the schedule's
previous job is still live.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MAX_FIRES_PER_PASS = 1000
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
OVERLAP = ("skip", "allow")
CATCH_UP = ("none", "one", "all")
# A cron expression names a tick at most this far ahead (cronsim gives up after 50 years as well).
_HORIZON_YEARS = 50


class CronError(ValueError):
    """A cron expression or timezone the service cannot use; the message says why."""


def expression(cron: str) -> str:
    """The expression cronsim evaluates (aliases expanded); raises CronError if it is not one."""
    text = " ".join(cron.split())
    text = ALIASES.get(text.lower(), text)
    if text.startswith("@"):
        raise CronError(f"unknown alias {cron.strip()!r}; known: {', '.join(ALIASES)}")
    fields = len(text.split())
    if fields not in (5, 6):
        raise CronError(
            f"has {fields} fields; expected 5 (minute hour day-of-month month day-of-week), "
            "6 (a seconds field first) or an alias such as @daily"
        )
    probe = datetime(2000, 1, 1, tzinfo=UTC)
    try:
        next(CronSim(text, probe))
    except CronSimError as exc:
        raise CronError(f"{exc} in {cron.strip()!r}") from None
    except StopIteration:
        raise CronError(f"{cron.strip()!r} never fires") from None
    return text


def zone(name: str) -> ZoneInfo:
    """The IANA timezone `name`; raises CronError for a name the tz database does not have."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # ValueError: a path-like or malformed key
        raise CronError(f"unknown timezone {name!r}; use an IANA name such as Europe/Berlin or UTC") from None


def ticks_after(cron: str, timezone: str, after: float) -> Iterator[float]:
    """The schedule's ticks strictly after `after` (epoch seconds), in order, as epoch seconds."""
    tz = zone(timezone)
    text = expression(cron)
    start = datetime.fromtimestamp(after, tz)
    try:
        for when in CronSim(text, start):
            tick = when.timestamp()
            # In the repeated hour of a fall-back night, cronsim walks local wall time, which can name a
            # tick already behind `after` (its first occurrence): that one was decided.
            if tick > after:
                yield tick
    except StopIteration:  # cronsim found nothing within its horizon
        return


def latest_tick(cron: str, timezone: str, at_or_before: float) -> float | None:
    """The schedule's last tick at or before `at_or_before`, if one is within the horizon."""
    tz = zone(timezone)
    text = expression(cron)
    # cronsim's reverse walk first steps back a second: start one second later to include the instant.
    start = datetime.fromtimestamp(math.floor(at_or_before) + 1, tz)
    floor = at_or_before - _HORIZON_YEARS * 366 * 86_400
    try:
        for when in CronSim(text, start, reverse=True):
            tick = when.timestamp()
            if tick <= at_or_before:
                return tick if tick > floor else None
    except StopIteration:
        return None
    return None


def next_fire_times(cron: str, timezone: str, after: float, count: int) -> list[datetime]:
    """The next `count` ticks after `after`, as aware datetimes in the schedule's timezone."""
    tz = zone(timezone)
    found = []
    for tick in ticks_after(cron, timezone, after):
        found.append(datetime.fromtimestamp(tick, tz))
        if len(found) >= count:
            break
    return found


def job_id(schedule_id: str, tick: float) -> str:
    """The deterministic id of the job fired for `tick`: the same tick always names the same job."""
    return f"{schedule_id}:{datetime.fromtimestamp(tick, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


# ------------------------------------------------------------------------------------------------ planning


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as the scheduler holds it: its timing, its policies and how far it has been decided."""

    schedule_id: str
    cron: str
    timezone: str
    overlap: str  # skip | allow
    catch_up: str  # none | one | all
    paused: bool
    checked_through: float  # epoch seconds: every tick up to here is decided
    last_job_id: str | None = None
    version: int = 1


@dataclass(frozen=True, slots=True)
class Fire:
    schedule_id: str
    tick: float
    job_id: str


@dataclass(frozen=True, slots=True)
class Advance:
    """A schedule's new bookkeeping after a pass: decided through `checked_through`; `last` is the last
    job the pass fired for it, if any. Written only if the schedule still has `version`."""

    schedule_id: str
    version: int
    checked_through: float
    last: Fire | None


@dataclass
class Plan:
    fires: list[Fire]
    advances: list[Advance]
    wake_at: float | None  # the next pass: the earliest tick still ahead (None: no schedule is active)

    def applied(self, schedules: Iterable[Schedule]) -> list[Schedule]:
        """The schedules as they stand once the plan is committed."""
        by_id = {a.schedule_id: a for a in self.advances}
        updated = []
        for s in schedules:
            a = by_id.get(s.schedule_id)
            if a is not None:
                s = replace(
                    s, checked_through=a.checked_through, last_job_id=a.last.job_id if a.last else s.last_job_id
                )
            updated.append(s)
        return updated


def plan(
    schedules: Iterable[Schedule],
    *,
    live: Callable[[str], bool],
    since: float,
    now: float,
    limit: int = MAX_FIRES_PER_PASS,
) -> Plan:
    """What to fire now. `live(job_id)` says whether a job is still waiting or running (for overlap:
    skip); `since` is when the current scheduler began firing (ticks before it were missed)."""
    fires: list[Fire] = []
    advances: list[Advance] = []
    wake_at: float | None = None
    for schedule in schedules:
        if schedule.paused:
            continue
        try:
            decided, truncated = _due(schedule, since, now, limit)
        except CronError:
            continue  # validated when stored; a tz database without the zone any more cannot fire it
        last: Fire | None = None
        previous = schedule.last_job_id
        for tick, fire in decided:
            if not fire:
                continue
            # A job fired earlier in this same pass is live by definition (it is not admitted yet).
            if schedule.overlap == "skip" and previous is not None and (last is not None or live(previous)):
                continue
            last = Fire(schedule.schedule_id, tick, job_id(schedule.schedule_id, tick))
            fires.append(last)
            previous = last.job_id
        if decided:
            advances.append(Advance(schedule.schedule_id, schedule.version, decided[-1][0], last))
        upcoming = now if truncated else next(ticks_after(schedule.cron, schedule.timezone, now), None)
        if upcoming is not None and (wake_at is None or upcoming < wake_at):
            wake_at = upcoming
    return Plan(fires, advances, wake_at)


def _due(schedule: Schedule, since: float, now: float, limit: int) -> tuple[list[tuple[float, bool]], bool]:
    """The ticks this pass decides, in order, each with whether it may fire; and whether `limit` cut the
    list short (more are due)."""
    checked = schedule.checked_through
    decided: list[tuple[float, bool]] = []
    if since > checked:  # ticks from checked_through to since fell while no scheduler was firing
        if schedule.catch_up == "all":
            for tick in ticks_after(schedule.cron, schedule.timezone, checked):
                if tick > since:
                    break
                if len(decided) >= limit:
                    return decided, True
                decided.append((tick, True))
        else:
            latest = latest_tick(schedule.cron, schedule.timezone, since)
            if latest is not None and latest > checked:
                decided.append((latest, schedule.catch_up == "one"))
        checked = max(checked, since)
    for tick in ticks_after(schedule.cron, schedule.timezone, checked):
        if tick > now:
            break
        if len(decided) >= limit:
            return decided, True
        decided.append((tick, True))
    return decided, False
