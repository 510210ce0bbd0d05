"""`POST /jobs` and `POST /jobs/batch` after routing: decode, check, commit through the batcher, answer.
Called by the Litestar handlers and by the fast path in front of Litestar (`fast_path.py`) alike, so both
answer exactly the same way."""

from __future__ import annotations

import re
from collections import Counter

import msgspec
from litestar.datastructures import State

from service import handlers
from service.api import job_types
from service.api.scheduler_link import SchedulerLink
from service.api.schemas import (
    JOB_ID_PATTERN,
    AttemptView,
    BatchAccepted,
    JobSubmission,
    JobView,
    check,
    decode_batch,
    decode_submission,
    name_job,
    validate,
)
from service.api.schemas import Accepted as AcceptedView
from service.api.submit import Accepted, SubmitBatcher, new_job_ids, timestamp
from service.api.views import load_job
from service.dag import find_cycle, parents_first
from service.errors import DependencyCycle, InvalidRequest, ServiceUnavailable, TooManyRequests
from service.model import Resources, Status
from service.settings import Settings


def refuse_while_draining(state: State) -> None:
    if state.draining:
        raise ServiceUnavailable("the service is shutting down and accepts no new jobs; retry shortly")


async def submit_one(state: State, body: bytes, idempotency_key: str | None) -> tuple[int, JobView]:
    """POST /jobs after the draining check: the status code and the job."""
    submission = job_types.with_defaults(body, decode_submission(body))
    if idempotency_key is not None:
        if submission.job_id is None:
            if not JOB_ID.match(idempotency_key):
                raise InvalidRequest.field("Idempotency-Key", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
            submission = msgspec.structs.replace(submission, job_id=idempotency_key)
        elif idempotency_key != submission.job_id:
            raise InvalidRequest.field("job_id", "differs from the Idempotency-Key header")
    settings: Settings = state.settings
    validate(submission, capacity=state.capacity, known_types=handlers.known_types())
    job_types.check_payload(submission)
    _refuse_beyond_live_limit(state, 1)
    batcher: SubmitBatcher = state.batcher
    accepted = await batcher.submit(submission)
    if accepted.created:
        state.telemetry.add("taskq_jobs_submitted", type=submission.type, priority=submission.priority.value)
        if accepted.status not in _TERMINAL_VALUES:
            # Everything is known without reading the row back: one query less per submission.
            return 201, created_view(submission, accepted, settings.default_timeout_seconds)
    view = await load_job(state, accepted.job_id)
    return 201 if accepted.created else 200, view


def _refuse_beyond_live_limit(state: State, adding: int) -> None:
    """TASKQ_MAX_LIVE_JOBS: the scheduler holds every waiting or running job in memory, so their number
    is bounded. Checked against the scheduler's count as of its last word (each turn's events carry it),
    so submissions in flight at the same moment can pass it by what they hold; a replay of an existing
    job is refused too while the queue is full, and gets its 200 once there is room."""
    settings: Settings = state.settings
    link: SchedulerLink = state.link
    if link.live_jobs + adding > settings.max_live_jobs:
        message = f"{link.live_jobs} jobs are waiting or running; TASKQ_MAX_LIVE_JOBS is {settings.max_live_jobs}"
        raise TooManyRequests(
            f"the queue is full: {message}; retry when jobs have finished",
            retry_after_seconds=1,
            errors=[{"field": "TASKQ_MAX_LIVE_JOBS", "message": message}],
        )


_TERMINAL_VALUES = frozenset(s.value for s in Status if s.terminal)


JOB_ID = re.compile(JOB_ID_PATTERN)


def created_view(submission: JobSubmission, accepted: Accepted, default_timeout: float) -> JobView:
    """The job as its submission and the scheduler's answer describe it, equal to what a GET returns."""
    running = accepted.started_at is not None
    run_at = timestamp(submission.run_at) if submission.run_at is not None else None
    return JobView(
        job_id=accepted.job_id,
        type=submission.type,
        priority=submission.priority.value,
        status=accepted.status,
        payload=submission.payload,
        resource_requirements=submission.resource_requirements,
        depends_on=list(submission.depends_on),
        retry_config=submission.retry_config,
        timeout_seconds=submission.timeout_seconds if submission.timeout_seconds is not None else default_timeout,
        run_at=run_at,
        next_run_at=run_at if accepted.status == Status.SCHEDULED.value else None,
        created_at=timestamp(accepted.created_at) or "",
        started_at=timestamp(accepted.started_at),
        finished_at=None,
        attempt_count=1 if running else 0,
        error=None,
        result=None,
        position_in_queue=accepted.position if accepted.status == Status.PENDING.value else None,
        attempts=[AttemptView(1, timestamp(accepted.started_at), None, None, None, None)] if running else [],
    )


async def submit_many(state: State, body: bytes) -> tuple[int, BatchAccepted]:
    """POST /jobs/batch after the draining check: the status code and the answer. The per-job work here
    is kept to a few µs: the graph checks run only when some job has dependencies, a job's field prefix
    (`jobs.3.`) is only built for a reject, and created jobs are answered from the batcher's outcome."""
    jobs = job_types.batch_with_defaults(body, decode_batch(body)).jobs
    capacity: Resources = state.capacity
    known = handlers.known_types()
    fresh = iter(new_job_ids(sum(1 for s in jobs if s.job_id is None)))
    ids: dict[str, int] = {}
    submissions: list[JobSubmission] = []
    dependent = False
    for index, submission in enumerate(jobs):
        try:
            check(submission, capacity, known)
            job_types.check_payload(submission)
        except InvalidRequest as exc:
            name_job(exc, f"jobs.{index}.")
            raise
        job_id = submission.job_id
        if job_id is None:
            job_id = next(fresh)
            submission = msgspec.structs.replace(submission, job_id=job_id)
        elif job_id in ids:
            raise InvalidRequest.field(f"jobs.{index}.job_id", f"repeats jobs.{ids[job_id]}.job_id")
        ids[job_id] = index
        submissions.append(submission)
        if submission.depends_on:
            dependent = True
    ordered = submissions
    if dependent:
        edges = {s.job_id: list(s.depends_on) for s in submissions if s.job_id is not None}
        cycle = find_cycle(edges)
        if cycle is not None:
            path = " -> ".join(cycle)
            raise DependencyCycle(
                f"depends_on: the batch's dependencies form a cycle: {path}; nothing was created",
                errors=[{"field": f"jobs.{ids[cycle[0]]}.depends_on", "message": f"cycle: {path}"}],
            )
        ordered = [submissions[ids[job_id]] for job_id in parents_first(list(edges), edges)]
    _refuse_beyond_live_limit(state, len(ordered))
    batcher: SubmitBatcher = state.batcher
    accepted = await batcher.submit_batch(ordered)
    by_id = {a.job_id: a for a in accepted}
    answers = []
    created: Counter[tuple[str, str]] = Counter()
    created_at: dict[float, str] = {}  # a batch shares one created_at: format it once
    for submission in submissions:
        assert submission.job_id is not None
        outcome = by_id[submission.job_id]
        if outcome.created:
            priority = submission.priority.value
            if (at := created_at.get(outcome.created_at)) is None:
                at = created_at[outcome.created_at] = timestamp(outcome.created_at) or ""
            answers.append(AcceptedView(outcome.job_id, outcome.status, at, priority, outcome.position))
            created[submission.type, priority] += 1
        else:
            view = await load_job(state, outcome.job_id)
            answers.append(
                AcceptedView(view.job_id, view.status, view.created_at, view.priority, view.position_in_queue)
            )
    for (job_type, priority), n in created.items():  # one measurement per kind, not per job
        state.telemetry.add("taskq_jobs_submitted", n, type=job_type, priority=priority)
    return 201 if created else 200, BatchAccepted(answers)
