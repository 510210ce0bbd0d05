"""The worker: the body of one forked process that runs one job attempt, then exits (or, for a job type
registered with `reuse_worker=True`, waits for the next attempt the supervisor hands it).

It is forked from the zygote (`zygote.py`), which has already imported every handler, so a start costs a
fork (and with a warm spare, not even that). It waits for its `WorkerJob`, runs the handler under a fresh
event loop, sends back one `WorkerResult` and leaves with `os._exit`, skipping the parent's atexit
hooks and buffers that it inherited.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import logging
import math
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgspec

from service import handlers
from service.model import contains_nul
from service.processes import die_with_parent, name_process
from service.protocol import WorkerBeat, WorkerJob, WorkerLog, WorkerResult
from service.transport import ChannelClosed, receive_frame, send_frame

_job_decoder = msgspec.msgpack.Decoder(WorkerJob)
_json = msgspec.json.Encoder()


class _PipeHandler(logging.Handler):
    """Sends the handler's log records up the worker's socket, to land in the job's logs."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError):
            send_frame(self._sock, WorkerLog(record.levelname.lower(), self.format(record), record.created))


BEAT_INTERVAL_SECONDS = 0.2  # at most one progress or heartbeat message per attempt this often


class BeatThrottle:
    """Keeps a handler's `ctx.progress` in a tight loop from flooding the supervisor, the scheduler and
    the store: a beat goes out at once if the last one left at least `interval` ago, otherwise it waits
    as the pending one (a newer beat replaces it; an unsent progress rides along with a later heartbeat)
    until `flush`, which the worker calls when the interval is over and always before the attempt's
    result, so the last value is never lost."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.sent_at = -math.inf
        self.pending: WorkerBeat | None = None

    def offer(self, beat: WorkerBeat) -> WorkerBeat | None:
        """The beat to send now, or None when it has to wait (then `due_in` says how long)."""
        if self.pending is not None and beat.progress is None and self.pending.progress is not None:
            beat = WorkerBeat(beat.at, self.pending.progress, self.pending.message)
        now = self.clock()
        if now - self.sent_at >= self.interval:
            self.sent_at, self.pending = now, None
            return beat
        self.pending = beat
        return None

    def due_in(self) -> float:
        return max(0.0, self.sent_at + self.interval - self.clock())

    def flush(self) -> WorkerBeat | None:
        pending, self.pending = self.pending, None
        if pending is not None:
            self.sent_at = self.clock()
        return pending


class _WorkerContext(handlers.JobContext):
    """The context of an attempt in a worker: progress and heartbeats go up the worker's socket as
    `WorkerBeat`s (throttled); children are submitted through the service's own API (`JobContext`'s
    default, TASKQ_URL with the per-run worker credential): the worker never touches the database."""

    def __init__(
        self, job: WorkerJob, log: logging.Logger, sock: socket.socket, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(job.job_id, job.attempt, log)
        self._sock = sock
        self._loop = loop
        self._throttle = BeatThrottle(BEAT_INTERVAL_SECONDS)
        self._timer: asyncio.TimerHandle | None = None

    def _beat(self, fraction: float | None, message: str | None) -> None:
        beat = self._throttle.offer(WorkerBeat(time.time(), fraction, message))
        if beat is not None:
            self._send_beat(beat)
        elif self._timer is None and self._loop.is_running():
            # An async handler: the held beat leaves when the interval is over, even if no other call
            # comes. (A plain `def` handler's leaves with its next call, or with the attempt's end.)
            self._timer = self._loop.call_later(self._throttle.due_in(), self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        beat = self._throttle.flush()
        if beat is not None:
            self._send_beat(beat)

    def _send_beat(self, beat: WorkerBeat) -> None:
        with contextlib.suppress(OSError):
            send_frame(self._sock, beat)


_template_loop: asyncio.AbstractEventLoop | None = None  # made in the zygote, adopted by each worker


def prepare() -> None:
    """In the zygote, once: what every worker would otherwise set up for itself after each fork. In a
    forked child every object it builds or first touches costs page faults (copy-on-write), about as
    much as the fork itself: an event loop built after the fork cost more than the whole handler."""
    global _template_loop
    for stream in (sys.stdout, sys.stderr):  # pipes to the supervisor: line-buffered, each line as written
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    # A job's log record needs only its message and level (see _PipeHandler): no caller lookup (a walk
    # up the stack), no thread, process or multiprocessing names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    _template_loop = asyncio.new_event_loop()


def _own_loop() -> asyncio.AbstractEventLoop:
    """The zygote's event loop object, with a selector and a self-pipe of this process's own: the ones
    it was built with are shared with the zygote and every sibling (an epoll set and a socketpair survive
    a fork), so a wakeup meant for this worker could reach another. Private attributes of asyncio's
    selector loop (CPython 3.11-3.13): anything else gets a loop built here."""
    loop = _template_loop
    if loop is None or not all(hasattr(loop, name) for name in _LOOP_INTERNALS):
        return asyncio.new_event_loop()
    _renew_selector(loop)
    return loop


def _renew_selector(loop: asyncio.AbstractEventLoop) -> None:
    inherited = loop._selector  # type: ignore[attr-defined]
    loop._selector = selectors.DefaultSelector()  # type: ignore[attr-defined]
    inherited.close()  # our descriptor only: the epoll set itself lives on in the zygote
    loop._ssock.close()  # type: ignore[attr-defined]
    loop._csock.close()  # type: ignore[attr-defined]
    loop._internal_fds -= 1  # type: ignore[attr-defined]
    loop._make_self_pipe()  # type: ignore[attr-defined]


_LOOP_INTERNALS = ("_selector", "_ssock", "_csock", "_internal_fds", "_make_self_pipe")

WARM_UP_JOB = WorkerJob("warm-up", 1, "quick_task", {"duration_seconds": 0})


def warm_up(rounds: int = 20) -> None:
    """In the zygote, before it forks: run a built-in job through the worker's own path a few times.
    CPython 3.11 rewrites a function's bytecode in place as it runs (quickening, specialisation); done
    here, every worker inherits code that is already rewritten instead of copying each page of it on
    first use. Only the built-in handler runs: a user's handler never runs outside a job."""
    loop = asyncio.new_event_loop()
    try:
        for _ in range(rounds):
            ours, theirs = socket.socketpair()
            with ours, theirs:
                _renew_selector(loop)
                send_frame(ours, WARM_UP_JOB)
                job = receive_frame(theirs, _job_decoder)
                send_frame(theirs, _execute(job, theirs, loop))
                ours.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    while ours.recv(1 << 16):
                        pass
    finally:
        loop.close()


def run(sock: socket.socket, parent_pid: int) -> None:
    """Entry point in the forked child; never returns normally (the caller `_exit`s)."""
    die_with_parent(parent_pid)
    name_process("worker (spare)")
    # Everything a job needs is made while the worker is still a spare, off the path of a start.
    loop = _own_loop()
    asyncio.set_event_loop(loop)
    sock.setblocking(True)
    while True:
        try:
            job = receive_frame(sock, _job_decoder)
        except ChannelClosed:
            return  # a spare that was never used, or a reused worker retired: the supervisor let go
        name_process(f"worker {job.job_id} attempt {job.attempt}")
        result = _execute(job, sock, loop)
        sys.stdout.flush()  # before the result: the supervisor drains these pipes when the result is in
        sys.stderr.flush()
        try:
            send_frame(sock, result)
        except OverflowError as exc:  # msgpack carries integers of at most 64 bits; nothing was sent yet
            error = f"result cannot be stored: {exc} (integers must fit in 64 bits)"
            send_frame(sock, WorkerResult(ok=False, error=error, permanent=True))
        if not job.reuse:
            return
        # The next attempt starts clean of what this one left running on the loop, and of its signal setup.
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        name_process("worker (reused)")


def _execute(job: WorkerJob, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> WorkerResult:
    registered = handlers.spec(job.type)
    if registered is None:
        return WorkerResult(ok=False, error=f"no handler for job type {job.type!r}", permanent=True)
    # A Logger of its own, not logging.getLogger: that registry keeps every name forever, which a reused
    # worker would grow by one logger per attempt.
    log = logging.Logger(f"taskq.job.{job.job_id}", logging.DEBUG)
    log.propagate = False
    log.addHandler(_PipeHandler(sock))
    ctx = _WorkerContext(job, log, sock, loop)
    try:
        return _run_handler(registered, ctx, job, loop)
    finally:
        ctx.flush()  # before the result: the attempt's last progress is stored with it


def _run_handler(
    registered: handlers.JobType[..., Any], ctx: _WorkerContext, job: WorkerJob, loop: asyncio.AbstractEventLoop
) -> WorkerResult:
    log = ctx.log
    started = time.monotonic()
    try:
        outcome = registered.handler(ctx, registered.decode_payload(job.payload))
        # A coroutine function's call gives an awaitable to run; a plain function has already run.
        result: Any = loop.run_until_complete(outcome) if inspect.isawaitable(outcome) else outcome
        _json.encode(result)  # the result is stored as JSON: refuse what cannot be
        if contains_nul(result):
            return WorkerResult(
                ok=False,
                error="result contains the NUL character (\\u0000), which PostgreSQL cannot store",
                permanent=True,
            )
    except handlers.PermanentError as exc:
        return WorkerResult(ok=False, error=f"{type(exc).__name__}: {exc}", permanent=True)
    except msgspec.EncodeError as exc:
        return WorkerResult(ok=False, error=f"result cannot be stored: {exc}", permanent=True)
    except BaseException as exc:  # any failure of user code is the attempt's failure, never the worker's
        log.error("handler raised after %.3fs:\n%s", time.monotonic() - started, traceback.format_exc().rstrip())
        return WorkerResult(ok=False, error=f"{type(exc).__name__}: {exc}")
    return WorkerResult(ok=True, result=result)
