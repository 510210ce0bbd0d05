"""Every message that crosses a process boundary, as msgspec Structs in tagged unions.

Links (all length-prefixed msgpack frames, see `service.transport`):

* api -> scheduler: `ApiHello`, `Submitted`, `CancelRequest`, `PositionQuery`, `ExplainQuery`,
  `SchedulesChanged`, `TypeControl`; answered by `Reply`.
* supervisor -> scheduler: `SupervisorHello`, `AttemptStarted`, `AttemptFinished`, `HandlerLog`,
  `AttemptBeat`.
* scheduler -> supervisor: `RunJob`, `KillJob`, `Ack`.
* supervisor <-> worker: `WorkerJob` down, `WorkerLog`, `WorkerBeat` and `WorkerResult` up.
* supervisor <-> zygote (a SOCK_SEQPACKET pair, one message per packet): `SpawnWorkers` down;
  `ZygoteReady`, `WorkerForked` (with the worker's descriptors attached, SCM_RIGHTS) and `WorkersExited` up.

Times are seconds since the epoch (floats): the wire carries no datetime objects.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from service.model import Outcome, RetryPolicy, Status


class Message(msgspec.Struct, tag=True, tag_field="kind"):
    """Base of every tagged message: the class name travels as `kind`."""


# --------------------------------------------------------------------------------------------------------------
# api -> scheduler


class ApiHello(Message):
    pid: int
    restarts: int = 0  # how often the root restarted this actor (a metric)
    node: str = ""  # the node it runs on


class NodeInfo(msgspec.Struct, gc=False):
    """One executor node as the leader sees it (GET /stats `nodes`)."""

    name: str
    leader: bool
    connected: bool
    draining: bool
    capacity: dict[str, int]
    in_use: dict[str, int]
    running: int
    last_seen: float  # epoch seconds of its last message


class NewJob(msgspec.Struct, gc=False):
    """What the scheduler needs of a job that was just committed (never the payload)."""

    job_id: str
    type: str
    seq: int  # insertion order: FIFO within a priority
    priority: int  # Priority.level
    cpu_units: int
    memory_mb: int
    depends_on: list[str]
    status: Status  # as committed: blocked, pending, scheduled or upstream_failed
    created_at: float
    run_at: float | None
    timeout_seconds: float | None
    retry: RetryPolicy


class Submitted(Message):
    request_id: int
    jobs: list[NewJob]


class CancelRequest(Message):
    request_id: int
    job_id: str


class PositionQuery(Message):
    request_id: int
    job_ids: list[str]


class RedriveRequest(Message):
    """Re-drive a failed job from the dead letter queue (POST /jobs/{id}/retry)."""

    request_id: int
    job_id: str


class StatsQuery(Message):
    """GET /stats: job counts by status and resources in use, from the scheduler's own state."""

    request_id: int


class HealthQuery(Message):
    """GET /health/ready: is the scheduler able to dispatch (a supervisor connected, not draining)?"""

    request_id: int


class MetricsQuery(Message):
    """GET /metrics: the scheduler's own metrics, in Prometheus text format."""

    request_id: int


class ExplainQuery(Message):
    request_id: int
    job_id: str


CancelVerdict = Literal["cancelled", "cancel_requested", "not_waiting"]


class Reply(Message):
    """The scheduler's answer to one request, sent only after its effects are committed."""

    request_id: int
    positions: dict[str, int] = {}
    statuses: dict[str, Status] = {}
    started_at: dict[str, float] = {}  # of the jobs in `statuses` that are already running
    cancel: CancelVerdict | None = None
    explanation: dict[str, Any] | None = None
    redrive: Literal["redriven", "not_failed"] | None = None
    metrics: str | None = None
    dispatching: bool | None = None  # answer to HealthQuery
    counts: dict[str, int] = {}  # answer to StatsQuery: jobs by status
    in_use: dict[str, int] = {}  # answer to StatsQuery: resources held by running attempts
    live_jobs: int | None = None  # with a Submitted's answer: jobs waiting or running now
    capacity: dict[str, int] = {}  # answer to StatsQuery: the cluster's total (the node's, when single)
    nodes: list[NodeInfo] | None = None  # answer to StatsQuery in a cluster: one entry per executor node
    leader: str | None = None  # answer to StatsQuery and HealthQuery: the node whose scheduler leads


class SchedulesChanged(Message):
    """The API committed a new, changed or deleted schedule: the scheduler reloads the schedules."""

    request_id: int


class TypeControl(Message):
    """The API committed a type's controls (PATCH /types/{type}): here they are, as stored now."""

    request_id: int
    job_type: str
    paused: bool
    max_running: int | None
    max_starts_per_second: float | None


ApiToScheduler = (
    ApiHello
    | Submitted
    | CancelRequest
    | PositionQuery
    | ExplainQuery
    | RedriveRequest
    | MetricsQuery
    | HealthQuery
    | StatsQuery
    | SchedulesChanged
    | TypeControl
)


class JobEvent(msgspec.Struct, gc=False):
    """One status change of one job, as the WebSocket stream shows it. `seq` is gap-free and increasing:
    the scheduler is the only sequencer."""

    seq: int
    at: float
    job_id: str
    type: str
    priority: str
    status: str
    event: str
    attempt: int | None = None
    error: str | None = None
    progress: float | None = None  # event "progress": the fraction, and its message
    message: str | None = None


class Events(Message):
    """Scheduler -> every API: the committed status changes of one turn, in order."""

    events: list[JobEvent]
    live_jobs: int | None = None  # jobs waiting or running after the turn (the API's TASKQ_MAX_LIVE_JOBS check)
    # The largest CPU units and memory one node of the cluster offers: a job needing more can never run
    # (a 422 at submit). Sent when it changes, and in the first Events of a link.
    largest_node: list[int] | None = None


SchedulerToApi = Reply | Events

# --------------------------------------------------------------------------------------------------------------
# supervisor <-> scheduler


class AttemptRef(msgspec.Struct, frozen=True, gc=False):
    job_id: str
    attempt: int
    pid: int = 0  # its worker's, when one runs it: a scheduler that restarted before writing it learns it


class SupervisorHello(Message):
    """Sent on every (re)connect: the attempts this supervisor still owns (running, or ended with a report
    not yet acknowledged), so the scheduler can declare every other running attempt lost."""

    pid: int
    running: list[AttemptRef]
    # This supervisor process's identity, new at each start (a pid may be reused): a start sent to it
    # that it does not own never reached it (see SchedulerCore.supervisor_ready_with).
    instance: str = ""
    node: str = ""  # the node it runs on: its name in the cluster
    # What its node offers to jobs; 0 in a single node, where the scheduler's own settings say it.
    cpu_units: int = 0
    memory_mb: int = 0


class SupervisorStats(Message):
    """Every second: the supervisor's own figures, for the scheduler to export as metrics."""

    forks: int
    spares: int
    busy: int
    restarts: int
    # The supervisor's monotonic clock when it sent this, echoed in the `Ack` that answers it: the
    # executor's lease runs from this moment (see `Ack.lease`).
    sent_at: float = 0.0


class SupervisorStopping(Message):
    """The supervisor got SIGTERM: dispatch nothing more to it; what it runs is being interrupted."""

    pid: int


class AttemptStarted(Message):
    job_id: str
    attempt: int
    pid: int
    at: float


class AttemptFinished(Message):
    job_id: str
    attempt: int
    outcome: Outcome
    at: float
    error: str | None = None
    result: Any = None
    seq: int = 0  # the supervisor's outbox sequence number, echoed back in `Ack`


class HandlerLog(Message):
    job_id: str
    attempt: int
    level: str
    message: str
    at: float


class RunJob(Message):
    job_id: str
    attempt: int
    type: str
    payload: dict[str, Any]
    timeout_seconds: float | None
    memory_mb: int
    term: int = 0  # the leader's term (epoch): an executor refuses one older than the newest it has seen


class KillJob(Message):
    job_id: str
    attempt: int
    outcome: Outcome  # cancelled, interrupted or timed_out: what the attempt will be recorded as
    term: int = 0


class Ack(Message):
    seqs: list[int]
    term: int = 0
    # The answer to a `SupervisorStats` in a cluster: the executor may keep running its attempts until
    # `echo` (its own `sent_at`) plus `lease` seconds, and must kill them itself once that has passed
    # without a newer answer. 0: no lease (a single node).
    echo: float = 0.0
    lease: float = 0.0


class AttemptBeat(Message):
    """A running attempt's heartbeat, with its progress when `progress` is set (a `WorkerBeat` passed
    on). Stored with the scheduler's next commit, like a HandlerLog (see service/scheduler/beats.py)."""

    job_id: str
    attempt: int
    at: float
    progress: float | None = None
    message: str | None = None


SupervisorToScheduler = (
    SupervisorHello | SupervisorStopping | SupervisorStats | AttemptStarted | AttemptFinished | HandlerLog | AttemptBeat
)
SchedulerToSupervisor = RunJob | KillJob | Ack

# --------------------------------------------------------------------------------------------------------------
# supervisor <-> worker


class WorkerJob(Message):
    job_id: str
    attempt: int
    type: str
    payload: dict[str, Any]
    reuse: bool = False  # after the result, wait for another WorkerJob instead of exiting


class WorkerLog(Message):
    level: str
    message: str
    at: float


class WorkerResult(Message):
    ok: bool
    result: Any = None
    error: str | None = None
    permanent: bool = False


class WorkerBeat(Message):
    """`ctx.heartbeat()`, or `ctx.progress(...)` when `progress` is set; throttled in the worker."""

    at: float
    progress: float | None = None
    message: str | None = None


WorkerToSupervisor = WorkerLog | WorkerResult | WorkerBeat

# --------------------------------------------------------------------------------------------------------------
# supervisor <-> zygote


class SpawnWorkers(Message):
    count: int


class ZygoteReady(Message):
    """Its imports are done: `rss` is what every worker it forks holds before its handler allocates."""

    pid: int
    rss: int


class WorkerForked(Message):
    """A new spare; its socket, stdout and stderr read ends and a pidfd travel with this packet."""

    pid: int


class WorkersExited(Message):
    """Children the zygote reaped: (pid, exit code as from `os.waitstatus_to_exitcode`)."""

    exits: list[tuple[int, int]]


ZygoteToSupervisor = ZygoteReady | WorkerForked | WorkersExited

# Everything the scheduler's socket can receive, from either kind of client.
ToScheduler = ApiToScheduler | SupervisorToScheduler
