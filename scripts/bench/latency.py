"""Submit → start on an idle node, one job at a time, from the microsecond timestamps PostgreSQL holds;
and the stages of one job's life between the client's send and the job's finish."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from .common import log
from .database import US, Database
from .http_load import RawHttp, build_request
from .service_proc import ServiceProcess

LATENCY_JOBS = 200
LATENCY_WARMUP = 5
GAP_S = 0.06  # after each 201, so that the job has finished (checked below) before the next is sent


@dataclass
class JobTimes:
    """One job, in microseconds since the epoch (the client's clock and PostgreSQL's are the host's)."""

    sent: int  # client: just before the request's first byte
    created: int  # jobs.created_at: the API's transaction start (now())
    started: int  # attempts.started_at: the scheduler's start decision
    received: int  # client: the 201 fully read
    attempt_finished: int  # attempts.finished_at
    finished: int  # jobs.finished_at
    body: int | None  # job_logs.at of the handler's first line (the worker's clock); None if not found


@dataclass
class Latency:
    jobs: list[JobTimes] = field(default_factory=list)
    round_trips_s: list[float] = field(default_factory=list)  # perf_counter_ns, the same requests
    overlapped: int = 0  # jobs still unfinished when the next was sent (the node was not idle)

    def span(self, a: str, b: str) -> list[float]:
        """Seconds from stage `a` to stage `b`, per job that has both."""
        pairs = ((getattr(j, a), getattr(j, b)) for j in self.jobs)
        return [(y - x) / 1e6 for x, y in pairs if x is not None and y is not None]


# (from, to, label, what the span contains)
STAGES = [
    (
        "sent",
        "created",
        "client send → `jobs.created_at`",
        "the request over loopback, uvicorn's parsing, validation, the group-commit queue, up to the start of "
        "the API's transaction (`now()`)",
    ),
    (
        "created",
        "started",
        "`jobs.created_at` → `attempts.started_at`",
        "the API's insert and its durable commit, the notice to the scheduler, up to the start of the scheduler "
        "turn that starts the job (`attempts.started_at` is that turn's clock, taken before the turn commits)",
    ),
    (
        "started",
        "received",
        "`attempts.started_at` → client has the 201",
        "the scheduler turn's own durable commit (attempt row, job status, log lines, events), then its reply to "
        "the API (the 201 carries `started_at`), the response, loopback",
    ),
    (
        "started",
        "body",
        "`attempts.started_at` → the handler's first line",
        "the start commit, `RunJob` to the supervisor, the hand-off to a pre-forked worker, up to the handler's "
        "first statement (`ctx.log.info(...)`: `job_logs.at` is the worker's clock when it logged)",
    ),
    (
        "started",
        "attempt_finished",
        "`attempts.started_at` → `attempts.finished_at`",
        "the same start commit (the supervisor gets the job only after it), the hand-off to a pre-forked worker "
        "process, the handler (`duration_seconds: 0`), the result's report to the supervisor and the scheduler, "
        "up to the turn that closes the attempt (its clock)",
    ),
    (
        "attempt_finished",
        "finished",
        "`attempts.finished_at` → `jobs.finished_at`",
        "between the attempt's close and the job's terminal state (written in the same scheduler commit)",
    ),
    ("sent", "received", "client send → 201 (round trip)", "the whole synchronous part of a submission"),
    (
        "sent",
        "started",
        "client send → `attempts.started_at`",
        "submission and start decision, from the client's side",
    ),
    (
        "sent",
        "body",
        "client send → the handler's first line",
        "what the peers' harness calls idle latency (enqueue call → job body start)",
    ),
    ("created", "finished", "`jobs.created_at` → `jobs.finished_at`", "the job's whole life in the database"),
]


def one_at_a_time(svc: ServiceProcess, db: Database) -> Latency:
    """`LATENCY_JOBS` `quick_task` jobs (`duration_seconds: 0`), each sent once the previous one has
    finished; submit → start is `attempts.started_at − jobs.created_at` as PostgreSQL holds them."""
    log(f"latency: {LATENCY_JOBS} jobs one at a time on the idle node")
    out = Latency()
    sent: dict[str, tuple[int, int, float]] = {}
    with RawHttp(svc.port) as http:
        for i in range(-LATENCY_WARMUP, LATENCY_JOBS):
            job_id = f"lat-{i + LATENCY_WARMUP:04d}"
            body = {"job_id": job_id, "type": "quick_task", "payload": {"duration_seconds": 0}}
            raw = build_request("POST", "/jobs", svc.port, json.dumps(body).encode())
            status, answer, wall0, wall1, rt_ns = http.timed(raw)
            if status != 201:
                raise RuntimeError(f"POST /jobs -> {status}: {answer[:300]!r}")
            if i >= 0:
                sent[job_id] = (wall0 // 1000, wall1 // 1000, rt_ns / 1e9)
            time.sleep(GAP_S)
    rows = db.fetch(
        f"""SELECT j.job_id, {US.format("j.created_at")} AS created, {US.format("a.started_at")} AS started,
                   {US.format("a.finished_at")} AS attempt_finished, {US.format("j.finished_at")} AS finished,
                   (SELECT {US.format("min(l.at)")} FROM job_logs l
                    WHERE l.job_id = j.job_id AND l.attempt = 1 AND l.message LIKE 'attempt 1 of job % starting')
                   AS body
            FROM jobs j JOIN attempts a ON a.job_id = j.job_id AND a.attempt = 1
            WHERE j.job_id = ANY($1::text[]) AND j.status = 'succeeded'
            ORDER BY j.created_at""",
        list(sent),
    )
    if len(rows) != len(sent):
        raise RuntimeError(f"{len(sent)} latency jobs sent, {len(rows)} found succeeded with an attempt")
    for r in rows:
        wall0, wall1, rt = sent[r["job_id"]]
        out.jobs.append(
            JobTimes(wall0, r["created"], r["started"], wall1, r["attempt_finished"], r["finished"], r["body"])
        )
        out.round_trips_s.append(rt)
    out.overlapped = sum(a.finished > b.sent for a, b in zip(out.jobs, out.jobs[1:], strict=False))
    return out
