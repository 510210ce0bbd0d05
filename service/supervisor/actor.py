"""The supervisor actor: a single-threaded select loop that owns every worker process.

It receives `RunJob` and `KillJob` from the scheduler, hands each attempt to a pre-forked spare worker
(asking the zygote for the next spares ahead of need, so a start costs no fork on the latency path),
signals every worker through a pidfd (never a pid that may have been reused), enforces deadlines by
SIGTERM then SIGKILL after a grace, and reports `AttemptStarted` / `AttemptFinished` back. Finished
reports stay in an outbox until the scheduler acknowledges them after its commit, and are re-sent after a
reconnect: a result is never lost between the two actors.

The supervisor never forks a worker itself: the zygote (`zygote.py`) does, hands over the worker's
descriptors, reaps it and reports its exit code. A zygote that dies takes its workers with it; the
supervisor waits until each is gone, reports the attempts that had no result as crashed, and starts a
new zygote, keeping its outbox and its scheduler link.

In a cluster it holds an executor lease (`lease.py`): it takes orders only from the newest leader term it
has seen, and once no scheduler has answered its stats for the lease's length it kills its running
attempts itself (the zygote does too, should this process be frozen), since the leader may by then have
given them to another node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from service import handlers
from service.model import Outcome
from service.processes import die_with_parent, name_process
from service.protocol import (
    Ack,
    AttemptBeat,
    AttemptFinished,
    AttemptRef,
    AttemptStarted,
    HandlerLog,
    KillJob,
    RunJob,
    SchedulerToSupervisor,
    SupervisorHello,
    SupervisorStats,
    SupervisorStopping,
    WorkerBeat,
    WorkerForked,
    WorkerJob,
    WorkerLog,
    WorkerResult,
    WorkersExited,
    WorkerToSupervisor,
    ZygoteReady,
)
from service.settings import Settings
from service.supervisor import memory
from service.supervisor.lease import ExecutorLease, SharedExpiry
from service.supervisor.outcome import classify, describe_unstarted
from service.supervisor.zygote import FDS_PER_WORKER, ZygoteGone, ZygoteLink
from service.transport import FrameBuffer, encode_frame, send_bytes, send_frame

log = logging.getLogger("taskq.supervisor")

RECONNECT_SECONDS = 0.1
MEMORY_CHECK_SECONDS = 0.1
STATS_SECONDS = 1.0
ZYGOTE_RESTART_SECONDS = 0.5  # before replacing a zygote that died unready, doubled while none gets ready
ZYGOTE_RESTART_MAX_SECONDS = 10.0


@dataclass(eq=False)
class Worker:
    pid: int
    sock: socket.socket
    pidfd: int
    frames: FrameBuffer[WorkerToSupervisor] = field(default_factory=lambda: FrameBuffer(WorkerToSupervisor))
    job: RunJob | None = None
    result: WorkerResult | None = None
    deadline: float | None = None  # monotonic
    kill_reason: Outcome | None = None
    escalate_at: float | None = None  # monotonic time of the SIGKILL
    sock_open: bool = True
    output: dict[int, str] = field(default_factory=dict)  # stdout/stderr pipe -> log level
    partial: dict[int, bytes] = field(default_factory=dict)  # an unfinished line per pipe
    log_lines: int = 0
    dropped_lines: int = 0
    reuse: bool = False  # its job type allows running the next attempt in this same process
    runs: int = 0  # attempts it has finished
    reported: bool = False
    exited: bool = False
    orphaned: bool = False  # its zygote died: its pidfd, not the zygote, tells when it is gone
    kill_note: str | None = None  # why it was killed, where its kill reason alone does not say (a lapsed lease)


class Supervisor:
    def __init__(self, settings: Settings, scheduler_socket: str, restarts: int = 0) -> None:
        self.settings = settings
        self.restarts = restarts
        self.forks = 0
        self.next_stats = 0.0
        self.scheduler_socket = scheduler_socket
        self.pid = os.getpid()
        self.instance = uuid.uuid4().hex
        self.selector = selectors.DefaultSelector()
        self.spares: deque[Worker] = deque()  # fresh forks that have run nothing yet
        self.workers: dict[int, Worker] = {}  # every live worker by pid, for the zygote's exit reports
        # Attempts that arrived when no spare was at hand: each takes the next worker the zygote forks.
        self.waiting: dict[tuple[str, int], RunJob] = {}
        self.zygote: ZygoteLink | None = None
        self.requested = 0  # spares asked of the current zygote and not yet received
        self.next_zygote = 0.0  # monotonic time to start a zygote at, when there is none
        self.zygote_ready = False
        self.zygote_failures = 0  # zygotes in a row that died before they were ready
        # Workers that ran attempts of a reuse_worker type and may run more of those, never of other types.
        self.reused: deque[Worker] = deque()
        self.busy: dict[tuple[str, int], Worker] = {}
        self.outbox: dict[int, AttemptFinished] = {}
        self.next_seq = 1
        self.conn: socket.socket | None = None
        self.conn_frames: FrameBuffer[SchedulerToSupervisor] = FrameBuffer(SchedulerToSupervisor)
        self.outgoing: list[bytes] = []  # encoded frames for the scheduler, written by _flush
        self.next_connect = 0.0
        self.stopping = False
        self.interrupt_at: float | None = None  # monotonic; set by a node drain (SIGUSR1)
        self.stop_deadline = 0.0
        self._wake_r, self._wake_w = socket.socketpair()
        self.next_memory_check = 0.0
        # What an idle worker holds before its handler allocates anything: the forked interpreter. The
        # zygote reports its own when it is ready; ours is close, and stands in until then.
        self.baseline_rss = memory.resident_bytes(os.getpid()) or 0
        self.lease = ExecutorLease(required=settings.clustered)
        # Made before any zygote: each one maps it, to enforce the lease should this process be frozen.
        self.shared_expiry, self.lease_fd = SharedExpiry.create()

    # ---------------------------------------------------------------------------------------------- loop

    def run(self) -> None:
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, self._on_drain_signal)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        while True:
            now = time.monotonic()
            if self.zygote is None and now >= self.next_zygote and not self.stopping:
                self._start_zygote()
            if self.conn is None and now >= self.next_connect:
                self._connect()
            self._enforce_deadlines(now)
            if now >= self.next_stats and self.conn is not None:
                self.next_stats = now + STATS_SECONDS
                self._send(SupervisorStats(self.forks, len(self.spares), len(self.busy), self.restarts, sent_at=now))
            if self.stopping:  # handed back unused: here, not in the signal handler, which may interrupt a walk
                for job in list(self.waiting.values()):
                    self._drop_waiting(job, Outcome.INTERRUPTED)
            if self.stopping and (
                (not self.busy and (not self.outbox or self.conn is None)) or now >= self.stop_deadline
            ):
                self._flush()
                break
            self._request_spares()
            self._flush()
            ready = self.selector.select(self._timeout(now))
            # Before reading anything: the wait may have been a freeze (SIGSTOP) that outlasted the lease.
            self._enforce_lease(time.monotonic())
            for key, _ in ready:
                callback: Callable[[], None] = key.data
                callback()
        self._shutdown()

    def _timeout(self, now: float) -> float:
        moments = [now + 1.0, self.next_stats]
        if self.conn is None:
            moments.append(self.next_connect)
        if self.zygote is None:
            moments.append(self.next_zygote)
        for w in self.busy.values():
            if w.kill_reason is None and w.deadline is not None:
                moments.append(w.deadline)
            if w.escalate_at is not None:
                moments.append(w.escalate_at)
        if self.stopping:
            moments.append(self.stop_deadline)
        if self.interrupt_at is not None and self.busy:
            moments.append(self.interrupt_at)
        if self.busy:
            moments.append(self.next_memory_check)
        if (self.busy or self.waiting) and self.lease.expires_at is not None and self.lease.expires_at > now:
            moments.append(self.lease.expires_at)
        return max(0.0, min(moments) - now)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        # Only flags: the wakeup fd interrupts select, the loop does the work.
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + self.settings.kill_grace_seconds + 3.0
            self._send(SupervisorStopping(self.pid))
            for w in self.busy.values():
                self._kill(w, Outcome.INTERRUPTED)

    def _on_drain_signal(self, signum: int, frame: object) -> None:
        """SIGUSR1 from the root of a cluster node: drain this node only. The leader places nothing more
        here (SupervisorStopping); running attempts get the shutdown grace, then are interrupted (back in
        line, uncharged); the supervisor exits once every report is acknowledged."""
        if not self.stopping:
            self.stopping = True
            self.interrupt_at = time.monotonic() + self.settings.shutdown_grace_seconds
            self.stop_deadline = self.interrupt_at + self.settings.kill_grace_seconds + 3.0
            self._send(SupervisorStopping(self.pid))

    def _on_wake(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except BlockingIOError:
            pass

    # -------------------------------------------------------------------------------------- scheduler link

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.scheduler_socket)
        except OSError:
            sock.close()
            self.next_connect = time.monotonic() + RECONNECT_SECONDS
            return
        self.conn = sock
        self.conn_frames = FrameBuffer(SchedulerToSupervisor)
        # Attempts still running, and those that ended but whose report is not yet acknowledged: the
        # reports follow this Hello, so the scheduler must not declare those attempts lost.
        running = [AttemptRef(job_id, attempt, w.pid) for (job_id, attempt), w in self.busy.items()]
        running += [AttemptRef(job_id, attempt) for job_id, attempt in self.waiting]
        running += [AttemptRef(r.job_id, r.attempt) for r in self.outbox.values()]
        self._send(
            SupervisorHello(
                self.pid,
                running,
                self.instance,
                node=self.settings.node,
                cpu_units=self.settings.cpu_units,
                memory_mb=self.settings.memory_mb,
            )
        )
        for seq in sorted(self.outbox):
            self._send(self.outbox[seq])
        if self.settings.clustered:  # stats at once, not within a second: their answer renews the lease
            self.next_stats = 0.0
        if self.conn is not None:
            self.conn.setblocking(False)
            self.selector.register(self.conn, selectors.EVENT_READ, self._on_scheduler)
        log.info("connected to the scheduler, %d attempts running, %d reports re-sent", len(running), len(self.outbox))

    def _send(self, message: object) -> None:
        """Queue a frame for the scheduler; `_flush` writes the queue once per pass of the loop, so that a
        burst of starts and results costs one system call, not one per frame."""
        if self.conn is not None:
            self.outgoing.append(encode_frame(message))

    def _flush(self) -> None:
        if not self.outgoing:
            return
        # Swap first, join after: a frame the SIGTERM handler queues meanwhile lands in one list or the other.
        queued, self.outgoing = self.outgoing, []
        if self.conn is None:
            return
        data = b"".join(queued)
        try:
            send_bytes(self.conn, data)
        except OSError:
            self._disconnect()

    def _disconnect(self) -> None:
        self.outgoing = []  # what the next connection needs, its Hello and the outbox re-send
        if self.conn is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.conn)
        self.conn.close()
        self.conn = None
        self.next_connect = time.monotonic() + RECONNECT_SECONDS
        log.warning("lost the scheduler; %d reports wait in the outbox", len(self.outbox))

    def _on_scheduler(self) -> None:
        assert self.conn is not None
        try:
            data = self.conn.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._disconnect()
            return
        for message in self.conn_frames.feed(data):
            if isinstance(message, RunJob | KillJob | Ack) and not self.lease.admit(message.term):
                log.warning(
                    "ignored a %s of leader term %d: term %d leads now",
                    type(message).__name__,
                    message.term,
                    self.lease.term,
                )
            elif isinstance(message, RunJob):
                self._start(message)
            elif isinstance(message, KillJob):
                key = (message.job_id, message.attempt)
                target = self.busy.get(key)
                if target is not None:
                    self._kill(target, message.outcome)
                elif key in self.waiting:
                    self._drop_waiting(self.waiting[key], message.outcome)
            elif isinstance(message, Ack):
                for seq in message.seqs:
                    self.outbox.pop(seq, None)
                if self.lease.renew(message.echo, message.lease):
                    assert self.lease.expires_at is not None
                    self.shared_expiry.write(self.lease.expires_at)

    # ------------------------------------------------------------------------------------------- workers

    def _start_zygote(self) -> None:
        try:
            self.zygote = ZygoteLink(self.settings.handlers, self.lease_fd)
        except OSError as exc:
            log.error("cannot start the zygote: %s", exc)
            self.next_zygote = time.monotonic() + ZYGOTE_RESTART_SECONDS
            return
        self.requested = 0
        self.zygote_ready = False
        self.selector.register(self.zygote.sock, selectors.EVENT_READ, self._on_zygote)

    def _request_spares(self) -> None:
        """Keep `spare_workers` spares at hand, plus one for each attempt that waits for a worker."""
        if self.zygote is None:
            return
        wanted = len(self.waiting)
        if not self.stopping and self.conn is not None:
            wanted += self.settings.spare_workers
        missing = wanted - len(self.spares) - self.requested
        if missing <= 0:
            return
        try:
            self.zygote.spawn(missing, lambda: self._enforce_lease(time.monotonic()))
        except ZygoteGone:
            self._zygote_lost()
            return
        self.requested += missing

    def _on_zygote(self) -> None:
        assert self.zygote is not None
        try:
            messages = self.zygote.receive()
        except ZygoteGone:
            messages = None
        for message, fds in messages or ():
            if isinstance(message, WorkerForked) and len(fds) == FDS_PER_WORKER:
                self.requested = max(0, self.requested - 1)
                self._add_worker(message.pid, fds)
            elif isinstance(message, WorkersExited):
                for pid, exit_code in message.exits:
                    if (w := self.workers.get(pid)) is not None:
                        self._on_worker_exit(w, exit_code)
            elif isinstance(message, ZygoteReady):
                self.baseline_rss = message.rss
                self.zygote_ready = True
                self.zygote_failures = 0
                log.info("zygote %d ready (%d MB resident)", message.pid, message.rss >> 20)
            else:  # not ours to keep
                for fd in fds:
                    os.close(fd)
        if messages is None:
            self._zygote_lost()

    def _add_worker(self, pid: int, fds: list[int]) -> None:
        sock_fd, out_r, err_r, pidfd = fds
        self.forks += 1
        sock = socket.socket(fileno=sock_fd)
        sock.setblocking(False)
        w = Worker(pid=pid, sock=sock, pidfd=pidfd, output={out_r: "info", err_r: "warning"})
        self.workers[pid] = w
        self.selector.register(w.sock, selectors.EVENT_READ, lambda: self._on_worker_data(w))
        for fd in w.output:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, lambda fd=fd: self._on_worker_output(w, fd))
        if self.waiting:
            key = next(iter(self.waiting))
            self._assign(w, self.waiting.pop(key))
        else:
            self.spares.append(w)

    def _zygote_lost(self) -> None:
        """The zygote died, and each of its workers with it (PR_SET_PDEATHSIG). Idle ones are let go at
        once; a busy one is reported only once its pidfd says it is gone, so that its retry can never run
        beside it. A result it sent before it died still counts."""
        assert self.zygote is not None
        zygote, self.zygote = self.zygote, None
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(zygote.sock)
        code = zygote.close()
        if not self.zygote_ready:  # it cannot start (a handler module fails to import there?): back off
            self.zygote_failures += 1
        delay = 0.0  # one that was serving is replaced at once: attempts wait for its first workers
        if self.zygote_failures:
            delay = min(ZYGOTE_RESTART_SECONDS * 2 ** (self.zygote_failures - 1), ZYGOTE_RESTART_MAX_SECONDS)
        log.error("the zygote (pid %d) died with exit code %s; a new one in %.1f s", zygote.pid, code, delay)
        self.next_zygote = time.monotonic() + delay
        self.requested = 0
        for w in [*self.spares, *self.reused]:
            self._release(w)
        self.spares.clear()
        self.reused.clear()
        for w in list(self.workers.values()):
            if not w.orphaned:
                w.orphaned = True
                self.selector.register(w.pidfd, selectors.EVENT_READ, lambda w=w: self._on_orphan_exit(w))

    def _on_orphan_exit(self, w: Worker) -> None:
        # Killed by SIGKILL with its parent, unless it ended on its own just before: the zygote that knew
        # its exit code is gone.
        self._on_worker_exit(w, -signal.SIGKILL)

    def _release(self, w: Worker) -> None:
        """Let go of an idle worker's descriptors (it exits when its socket closes, or died already)."""
        for fd in list(w.output):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)
            os.close(fd)
        w.output.clear()
        if w.sock_open:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(w.sock)
            w.sock_open = False
        w.sock.close()
        os.close(w.pidfd)
        w.pidfd = -1
        self.workers.pop(w.pid, None)

    def _on_worker_output(self, w: Worker, fd: int) -> None:
        if fd not in w.output:  # already drained and closed at the worker's exit
            return
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_output(w, fd)
            return
        self._take_output(w, fd, data)

    def _take_output(self, w: Worker, fd: int, data: bytes) -> None:
        *lines, w.partial[fd] = (w.partial.get(fd, b"") + data).split(b"\n")
        for line in lines:
            self._handler_log(w, w.output[fd], line.decode(errors="replace"), time.time())

    def _drain_output(self, w: Worker, fd: int) -> None:
        """Everything the pipe holds now, and an unfinished last line as a line of its own."""
        with contextlib.suppress(OSError):  # BlockingIOError included: the pipe is empty for now
            while data := os.read(fd, 1 << 16):
                self._take_output(w, fd, data)
        if rest := w.partial.pop(fd, b""):
            self._handler_log(w, w.output[fd], rest.decode(errors="replace"), time.time())

    def _close_output(self, w: Worker, fd: int) -> None:
        if fd not in w.output:
            return
        self._drain_output(w, fd)  # what is left after the worker exited
        self.selector.unregister(fd)
        os.close(fd)
        del w.output[fd]

    def _handler_log(self, w: Worker, level: str, message: str, at: float) -> None:
        """Every line a handler writes, capped per attempt so that a chatty job cannot flood the store."""
        if w.job is None:
            return
        if w.log_lines >= self.settings.max_log_lines:
            w.dropped_lines += 1
            return
        w.log_lines += 1
        self._send(HandlerLog(w.job.job_id, w.job.attempt, level, storable(message), at))

    def _start(self, job: RunJob) -> None:
        key = (job.job_id, job.attempt)
        if key in self.busy or key in self.waiting:
            return  # a duplicate
        if self.stopping:  # sent before the scheduler heard we are stopping: hand it back unused
            self._report(job, Outcome.INTERRUPTED, "the supervisor is stopping", None)
            return
        if not self.lease.may_start(time.monotonic()):  # see _enforce_lease: hand it back unused
            self._report(job, Outcome.INTERRUPTED, self._lease_note() + "; it never reached a worker", None)
            return
        if handlers.reuses_worker(job.type) and self.reused:
            self._assign(self.reused.popleft(), job)
        elif self.spares:
            self._assign(self.spares.popleft(), job)
        else:  # the next worker the zygote forks is this attempt's
            self.waiting[key] = job
            self._request_spares()

    def _assign(self, w: Worker, job: RunJob) -> None:
        w.job = job
        w.reuse = handlers.reuses_worker(job.type)
        if job.timeout_seconds is not None:
            w.deadline = time.monotonic() + job.timeout_seconds
        self.busy[(job.job_id, job.attempt)] = w
        # If the worker is already gone, the zygote's exit report says how.
        with contextlib.suppress(OSError):
            send_frame(w.sock, WorkerJob(job.job_id, job.attempt, job.type, job.payload, reuse=w.reuse))
        self._send(AttemptStarted(job.job_id, job.attempt, w.pid, time.time()))

    def _drop_waiting(self, job: RunJob, reason: Outcome) -> None:
        """An attempt killed before any worker took it: it never ran."""
        del self.waiting[(job.job_id, job.attempt)]
        self._report(job, reason, describe_unstarted(reason), None)

    def _on_worker_data(self, w: Worker) -> None:
        if not w.sock_open:  # its exit, handled earlier in this same batch of events, closed it
            return
        try:
            data = w.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(w.sock)
            w.sock_open = False
            return
        self._take_frames(w, data)

    def _take_frames(self, w: Worker, data: bytes) -> None:
        for message in w.frames.feed(data):
            if isinstance(message, WorkerResult):
                w.result = message
                # The worker flushed stdout and stderr before it sent its result, so the pipes hold all
                # of this attempt's output: its lines (and the count of dropped ones) go before the report,
                # and whoever sees the attempt ended sees its whole log.
                for fd in list(w.output):
                    self._drain_output(w, fd)
                self._report_dropped(w)
                # The attempt is over when the handler's result is in: report now, not when the process
                # has finished exiting, so the next job need not wait for the teardown.
                self._end_attempt(w, exit_code=0)
                if w.reuse:
                    self._recycle(w)
                    return  # anything after the result belongs to the worker's next attempt
            elif isinstance(message, WorkerLog):
                self._handler_log(w, message.level, message.message, message.at)
            elif isinstance(message, WorkerBeat) and w.job is not None:  # throttled by the worker already
                beat = AttemptBeat(w.job.job_id, w.job.attempt, message.at, message.progress, message.message)
                self._send(beat)

    def _on_worker_exit(self, w: Worker, exit_code: int) -> None:
        if w.exited:
            return
        w.exited = True
        self.workers.pop(w.pid, None)
        while w.sock_open:  # the result may still sit in the socket
            try:
                data = w.sock.recv(1 << 16)
            except (BlockingIOError, OSError):
                data = b""
            if not data:
                self.selector.unregister(w.sock)
                w.sock_open = False
                break
            self._take_frames(w, data)  # a reusable worker's result retires it here (closing the socket)
        w.sock.close()
        for fd in list(w.output):
            self._close_output(w, fd)
        self._report_dropped(w)
        if w.orphaned:
            self.selector.unregister(w.pidfd)
        os.close(w.pidfd)
        w.pidfd = -1  # its number may be reused at once: no signal may reach it through this one
        if w.job is None:
            for pool in (self.spares, self.reused):
                if w in pool:
                    pool.remove(w)
            return
        self._end_attempt(w, exit_code)

    def _report_dropped(self, w: Worker) -> None:
        if w.dropped_lines and w.job is not None:
            self._send(
                HandlerLog(
                    w.job.job_id,
                    w.job.attempt,
                    "warning",
                    f"{w.dropped_lines} more log lines dropped: at most {self.settings.max_log_lines} per attempt",
                    time.time(),
                )
            )
            w.dropped_lines = 0

    def _recycle(self, w: Worker) -> None:
        """A reusable worker whose attempt ended cleanly waits for the next attempt of a reusable type, first
        in line (its pages are warm); one that was killed, has run `REUSE_LIMIT` attempts, or is not
        needed retires. It never runs an attempt of a type without reuse_worker: those get a fresh fork."""
        w.runs += 1  # its output was drained when its result arrived (_take_frames)
        keep = (
            w.kill_reason is None
            and not self.stopping
            and not w.exited
            and w.runs < handlers.REUSE_LIMIT
            and len(self.reused) < self.settings.spare_workers + self.settings.cpu_units
        )
        if not keep:  # its receive sees the socket close and it exits; the pidfd reaps it
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(w.sock)
            w.sock.close()
            w.sock_open = False
            return
        w.job = w.result = w.deadline = w.escalate_at = None
        w.reported = False
        w.log_lines = 0
        self.reused.appendleft(w)

    def _end_attempt(self, w: Worker, exit_code: int) -> None:
        """Report how the attempt ended, once: on its result, or on the process's exit without one."""
        if w.reported or w.job is None:
            return
        w.reported = True
        job = w.job
        self.busy.pop((job.job_id, job.attempt), None)
        outcome, error = classify(w.result, exit_code, w.kill_reason)
        if w.kill_note is not None and w.result is None:
            error = f"{w.kill_note} ({error})"
        self._report(job, outcome, error, w.result.result if w.result is not None and w.result.ok else None)

    def _report(self, job: RunJob, outcome: Outcome, error: str | None, result: object) -> None:
        error = storable(error) if error is not None else None
        report = AttemptFinished(job.job_id, job.attempt, outcome, time.time(), error, result, self.next_seq)
        self.next_seq += 1
        self.outbox[report.seq] = report
        self._send(report)

    def _kill(self, w: Worker, reason: Outcome) -> None:
        if w.kill_reason is not None:
            return
        w.kill_reason = reason
        w.escalate_at = time.monotonic() + self.settings.kill_grace_seconds
        _signal(w, signal.SIGTERM)

    def _enforce_deadlines(self, now: float) -> None:
        if self.interrupt_at is not None and now >= self.interrupt_at:  # a node drain's grace is over
            for w in list(self.busy.values()):
                if w.kill_reason is None:
                    self._kill(w, Outcome.INTERRUPTED)
        check_memory = now >= self.next_memory_check
        if check_memory:
            self.next_memory_check = now + MEMORY_CHECK_SECONDS
        for w in list(self.busy.values()):
            if check_memory and w.kill_reason is None and w.job is not None:
                rss = memory.resident_bytes(w.pid)
                if rss is not None and rss > memory.limit_bytes(w.job.memory_mb, self.baseline_rss):
                    log.warning(
                        "worker %d of %s uses %d MB, above its %d MB (+margin): killing it",
                        w.pid,
                        w.job.job_id,
                        rss >> 20,
                        w.job.memory_mb,
                        extra={"job_id": w.job.job_id},
                    )
                    self._kill(w, Outcome.MEMORY_EXCEEDED)
            if w.kill_reason is None and w.deadline is not None and now >= w.deadline:
                self._kill(w, Outcome.TIMED_OUT)
            if w.escalate_at is not None and now >= w.escalate_at:
                w.escalate_at = None
                _signal(w, signal.SIGKILL)

    def _enforce_lease(self, now: float) -> None:
        """Once the lease has lapsed, kill every running attempt at once and hand back every waiting one.

        SIGKILL, no grace: the leader gives the attempts to another node a kill grace and a second after
        the lease (at the earliest), so the whole margin is left for the kill to land. The attempts are
        reported `crashed`; one that never reached a worker goes back `interrupted` (it never ran, so it is
        not charged). The leader has closed them already, as a rule, and acknowledges the reports as stale.

        The rule after a freeze (SIGSTOP, a stall) that outlasted the lease: this runs before anything that
        arrived meanwhile is read, and while the lease stays lapsed every `RunJob` is handed back unused
        (`_start`), whatever its term (so is one that a clustered node receives before its first lease).
        A start sent before or during the freeze may have been given to another node since (the leader
        declares a silent node lost after the lease, a kill grace and a second, and retries its attempts
        elsewhere), and nothing in the RunJob says whether it was: its term may still be the current one.
        Only an answer to stats sent after the freeze renews the lease (an older answer's `echo + lease`
        lies in the past), and a start read after that answer was sent after it, by a leader that holds
        this node as alive: that one runs. The worst a refusal costs is a retry
        of an attempt that never started, uncharged."""
        if not self.lease.lapsed(now):
            return
        note = self._lease_note(now)
        killed = [w for w in self.busy.values() if w.kill_note is None]
        waiting = list(self.waiting.values())
        if not killed and not waiting:
            return
        log.warning("%s: killing %d attempts, handing back %d waiting", note, len(killed), len(waiting))
        for w in killed:
            w.kill_note = note
            w.kill_reason = w.kill_reason or Outcome.CRASHED
            w.escalate_at = None
            _signal(w, signal.SIGKILL)
        for job in waiting:
            del self.waiting[(job.job_id, job.attempt)]
            self._report(job, Outcome.INTERRUPTED, note + "; it never reached a worker", None)

    def _lease_note(self, now: float | None = None) -> str:
        if self.lease.expires_at is None:
            return "no lease from a scheduler yet"
        silence = self.lease.silence(time.monotonic() if now is None else now)
        return f"lost its lease: no word from a scheduler for {silence:.1f} s"

    def _shutdown(self) -> None:
        for w in self.workers.values():
            _signal(w, signal.SIGKILL)
        if self.zygote is not None:  # its idle spares die with it
            self.zygote.close()
        if self.conn is not None:
            self.conn.close()


def storable(text: str) -> str:
    """Handler output as PostgreSQL can store it: a NUL character in a text column is an error there, and
    one stray byte in a log line must not fail the scheduler's whole turn (and restart it, again and again)."""
    return text.replace("\x00", "\ufffd")


def _signal(w: Worker, signum: int) -> None:
    # Through the pidfd: the zygote may have reaped the worker already and its pid been given to another
    # process, which a kill by pid would hit.
    if w.pidfd >= 0:
        with contextlib.suppress(OSError):  # ProcessLookupError included: it is gone already
            signal.pidfd_send_signal(w.pidfd, signum)
    # Then its process group (each worker leads one, see zygote._child): the processes a handler started
    # must not outlive the attempt that a timeout, a cancel or the memory limit declared over. Linux does
    # not hand out a pid that is still some group's id, so while any of them lives this names them only.
    with contextlib.suppress(OSError):
        os.killpg(w.pid, signum)


def main(settings: Settings, scheduler_socket: str, parent_pid: int, restarts: int = 0) -> None:
    """Process entry point (spawned by the root supervisor)."""
    from service.logs import configure_logging

    die_with_parent(parent_pid)
    name_process("supervisor")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level, "supervisor")
    handlers.load(settings.handlers)
    Supervisor(settings, scheduler_socket, restarts).run()
