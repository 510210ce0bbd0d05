"""The scheduler's cron pass: the I/O side of `service/scheduler/cron.py`.

Only the active scheduler (the holder of the scheduler lock, so one per database) runs it, between turns
as it runs retention. It holds the schedules in memory (reloaded when the API says they changed, and at
every API (re)connection), asks `cron.plan` what is due, and commits in one transaction how far each
schedule is decided together with the jobs of the ticks that fire. The next turn admits those jobs into
the core as it admits a `Submitted` notice's. Exactly once per tick rests on three things: only the lock
holder fires; each schedule's `checked_through` is stored in the same transaction as its jobs, so a
restart resumes after the last committed pass; and a tick's job id is deterministic
(`<schedule_id>:<tick>`), so a tick committed twice anyway (a former holder whose pool connection
outlived its lock) is one row: the insert skips the existing id.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

import asyncpg

from service.api.schemas import JobTemplate, decode_template
from service.api.submit import job_row, new_job
from service.model import Status
from service.protocol import NewJob
from service.scheduler import cron
from service.store import gateway

log = logging.getLogger("taskq.scheduler.cron")


def schedule_of(row: gateway.ScheduleRow) -> cron.Schedule:
    return cron.Schedule(
        schedule_id=row.schedule_id,
        cron=row.cron,
        timezone=row.timezone,
        overlap=row.overlap,
        catch_up=row.catch_up,
        paused=row.paused,
        checked_through=row.checked_through.timestamp(),
        last_job_id=row.last_job_id,
        version=row.version,
    )


class CronPass:
    def __init__(self, default_timeout: float) -> None:
        self.default_timeout = default_timeout
        self.schedules: list[cron.Schedule] = []
        self.jobs: dict[str, str] = {}  # schedule id -> its job, as stored (JSON text)
        self.stale = True  # reload the schedules before the next pass
        self.next_at: float | None = 0.0  # epoch seconds of the next pass; None: no schedule is active
        self.since: float | None = None  # when this scheduler began firing: earlier ticks were missed
        self.fired: list[NewJob] = []  # committed by a pass, for the next turn to admit

    def changed(self, now: float) -> None:
        """The schedules changed in the database: reload them, and pass again, at the next chance."""
        self.stale = True
        self.next_at = now

    def wake_at(self, draining: bool) -> float | None:
        return None if draining else self.next_at

    def due(self, now: float, draining: bool) -> bool:
        return not draining and self.next_at is not None and now >= self.next_at

    def take_fired(self) -> list[NewJob]:
        fired, self.fired = self.fired, []
        return fired

    async def run(self, pool: asyncpg.Pool, live: Callable[[str], bool]) -> int:
        """One pass; returns how many jobs it committed (the caller wakes its next turn to admit them)."""
        now = time.time()
        if self.since is None:
            self.since = now
        if self.stale:
            self.stale = False
            stored = await gateway.list_schedules(pool)
            self.schedules = [schedule_of(row) for row in stored]
            self.jobs = {row.schedule_id: row.job for row in stored}
        waiting = {job.job_id for job in self.fired}
        plan = cron.plan(
            self.schedules, live=lambda job_id: job_id in waiting or live(job_id), since=self.since, now=now
        )
        self.next_at = plan.wake_at
        if not plan.advances:
            return 0
        rows = []
        templates: dict[str, JobTemplate] = {}
        for fire in plan.fires:
            text = self.jobs[fire.schedule_id]
            template = templates.get(fire.schedule_id) or templates.setdefault(fire.schedule_id, decode_template(text))
            # A POST /jobs of the same id with another body is a conflict (409), as for any job id.
            digest = hashlib.sha256(f"{fire.job_id}\0{text}".encode()).digest()
            rows.append(
                job_row(
                    template.submission(),
                    fire.job_id,
                    Status.PENDING,
                    None,
                    digest,
                    self.default_timeout,
                    schedule_id=fire.schedule_id,
                )
            )
        advances = [
            gateway.ScheduleAdvance(
                a.schedule_id,
                a.version,
                a.checked_through,
                a.last.tick if a.last else None,
                a.last.job_id if a.last else None,
            )
            for a in plan.advances
        ]
        async with pool.acquire() as conn:
            stood, inserted = await gateway.fire_schedules(conn, advances, rows)
        self.schedules = plan.applied(self.schedules)
        if len(stood) < len(advances):
            self.changed(now)  # a schedule changed or went since it was loaded: the API's notice follows
        created = {job.job_id: job for job in inserted}
        for row in rows:
            if (job := created.get(row.job_id)) is not None:
                self.fired.append(new_job(templates[row.schedule_id or ""].submission(), row, job.seq, job.created_at))
        skipped = [row.job_id for row in rows if row.schedule_id in stood and row.job_id not in created]
        if skipped:
            log.warning("ticks already fired (their jobs exist): %s", ", ".join(skipped[:10]))
        return len(created)
