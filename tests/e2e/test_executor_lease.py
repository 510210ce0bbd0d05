"""The executor's lease, on a real supervisor with its zygote and workers, driven by a fake scheduler: a
Unix server in the test that speaks the protocol in `service.transport` frames and grants a lease by
answering the supervisor's stats (`Ack(echo=sent_at, lease, term)`), or withholds it by staying silent.

Single-node behaviour (no lease, term 0) is the rest of the suite's: tests/e2e/test_zygote.py and
tests/e2e/test_failures.py run it through the whole process tree.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from service.model import Outcome
from service.protocol import (
    Ack,
    AttemptFinished,
    AttemptStarted,
    HandlerLog,
    KillJob,
    RunJob,
    SupervisorHello,
    SupervisorStats,
    SupervisorToScheduler,
    WorkersExited,
)
from service.supervisor.lease import SharedExpiry
from service.supervisor.zygote import MAX_PACKET, Zygote
from service.transport import FrameBuffer, send_frame
from tests.conftest import ROOT, wait_until

M = TypeVar("M")
LEASE = 2.0  # above the 1 s between stats plus a round trip, or it lapses before each renewal
TERM = 1
RUN_SUPERVISOR = (
    "import sys\n"
    "from service import settings\n"
    "from service.supervisor import actor\n"
    "actor.main(settings.load(), sys.argv[1], int(sys.argv[2]))\n"
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stopped(pid: int) -> bool:
    return psutil.Process(pid).status() == psutil.STATUS_STOPPED


class FakeScheduler:
    """The scheduler's end of the supervisor link. While `lease` > 0 it answers every `SupervisorStats` it
    reads with an Ack granting that lease; it reads only inside `expect` and `pump_until`, so a lease runs
    out while the test does anything else."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.conn: socket.socket | None = None
        self.frames: FrameBuffer[Any] = FrameBuffer(SupervisorToScheduler)
        self.queued: deque[Any] = deque()
        self.seen: list[Any] = []
        self.lease = 0.0
        self.term = TERM
        self.expiry = 0.0  # the latest moment granted, on the monotonic clock both processes share

    def recent(self) -> list[Any]:
        """What it read last, stats aside (they come every second and would hide the rest)."""
        return [m for m in self.seen if not isinstance(m, SupervisorStats)][-8:]

    def accept(self) -> None:
        self.server.settimeout(30)
        self.conn, _ = self.server.accept()

    def send(self, message: object) -> None:
        assert self.conn is not None
        send_frame(self.conn, message)

    def _take(self, message: Any) -> None:
        self.seen.append(message)
        if isinstance(message, SupervisorStats) and self.lease > 0:
            self.send(Ack([], term=self.term, echo=message.sent_at, lease=self.lease))
            self.expiry = max(self.expiry, message.sent_at + self.lease)

    def _read(self, timeout: float) -> None:
        assert self.conn is not None
        ready, _, _ = select.select([self.conn], [], [], max(0.0, timeout))
        if ready:
            data = self.conn.recv(1 << 16)
            if not data:
                pytest.fail(f"the supervisor closed its link; last seen: {self.recent()}")
            self.queued.extend(self.frames.feed(data))

    def expect(self, kind: type[M], match: Callable[[M], bool] = lambda m: True, timeout: float = 20.0) -> M:
        """The next message of `kind` that `match`es, answering stats on the way."""
        deadline = time.monotonic() + timeout
        while True:
            while self.queued:
                message = self.queued.popleft()
                self._take(message)
                if isinstance(message, kind) and match(message):
                    return message
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for a {kind.__name__}; last seen: {self.recent()}")
            self._read(deadline - time.monotonic())

    def pump_until(self, check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        """Keep reading (and answering stats) until `check()` holds."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; last seen: {self.recent()}")
            while self.queued:
                self._take(self.queued.popleft())
            self._read(0.02)

    def finished(self, job_id: str) -> AttemptFinished:
        """The report of `job_id`'s attempt, whether it came already (before another one looked for) or not."""
        for message in self.seen:
            if isinstance(message, AttemptFinished) and message.job_id == job_id:
                return message
        return self.expect(AttemptFinished, lambda m: m.job_id == job_id)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


def run_job(job_id: str, payload: dict[str, Any], term: int = TERM) -> RunJob:
    return RunJob(job_id, 1, "quick_task", {"duration_seconds": 0, **payload}, None, 256, term=term)


@pytest.fixture
def cluster_node(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], FakeScheduler, Path]]:
    """A clustered node's supervisor (and its zygote) linked to a fake scheduler; its log in `log`."""
    scheduler = FakeScheduler(tmp_path / "scheduler.sock")
    env = {
        **os.environ,
        "TASKQ_CLUSTER_SECRET": "s" * 32,
        "TASKQ_NODE_NAME": "node-a",
        "TASKQ_CPU_UNITS": "3",
        "TASKQ_MEMORY_MB": "777",
        "TASKQ_SPARE_WORKERS": "1",
    }
    log = tmp_path / "supervisor.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_SUPERVISOR, str(tmp_path / "scheduler.sock"), str(os.getpid())],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        scheduler.accept()
        yield process, scheduler, log
    finally:
        # Ours to stop: SIGKILL takes its zygote down with it, and the zygote its workers (PDEATHSIG).
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait(10)
        scheduler.close()


def test_a_frozen_supervisor_s_attempt_is_killed_by_the_zygote_once_its_lease_lapses(
    cluster_node: tuple[subprocess.Popen[bytes], FakeScheduler, Path], tmp_path: Path
) -> None:
    supervisor, scheduler, log = cluster_node
    hello = scheduler.expect(SupervisorHello)
    assert (hello.node, hello.cpu_units, hello.memory_mb) == ("node-a", 3, 777)
    scheduler.lease = LEASE
    scheduler.expect(SupervisorStats)  # sent at once after a clustered Hello, and answered: a lease
    scheduler.send(run_job("job_a", {"release_file": str(tmp_path / "never"), "spawn_child_seconds": 60}))
    worker = scheduler.expect(AttemptStarted, lambda m: m.job_id == "job_a").pid
    child_line = scheduler.expect(HandlerLog, lambda m: m.message.startswith("child "))
    child = int(child_line.message.split()[1])

    # The last renewal: a fresh stats answered, then silence.
    stats = scheduler.expect(SupervisorStats, lambda m: m.sent_at > time.monotonic() - 0.1)  # fresh, not queued
    scheduler.lease = 0.0
    expiry = stats.sent_at + LEASE
    # Orders of an older term come from a deposed leader: ignored, neither started nor reported. The
    # start after them proves too that the supervisor read that last renewal, sent before them.
    scheduler.send(KillJob("job_a", 1, Outcome.CANCELLED, term=TERM - 1))
    scheduler.send(run_job("job_stale", {}, term=TERM - 1))
    scheduler.send(run_job("job_b", {}))
    assert scheduler.finished("job_b").outcome is Outcome.SUCCEEDED
    assert not [m for m in scheduler.seen if getattr(m, "job_id", None) == "job_stale"]

    supervisor.send_signal(signal.SIGSTOP)
    wait_until(lambda: stopped(supervisor.pid), what="the supervisor to be stopped")
    assert time.monotonic() < expiry, "the freeze came after the lease ran out: the test proves nothing"
    # A start that waits in the socket through the freeze: it may have gone to another node since.
    scheduler.send(run_job("job_c", {}))

    wait_until(lambda: gone(worker), timeout=10, what="the zygote to kill the worker of the frozen supervisor")
    assert time.monotonic() >= expiry, "killed before its lease ran out"
    wait_until(lambda: gone(child), timeout=10, what="the handler's subprocess to die with its worker")
    assert stopped(supervisor.pid), "the zygote killed it, not the supervisor"
    assert "lease lapsed" in log.read_text()

    supervisor.send_signal(signal.SIGCONT)
    finished = scheduler.finished("job_a")
    assert finished.outcome is Outcome.CRASHED, finished  # not cancelled: the stale KillJob was ignored
    assert finished.error is not None, finished
    assert "lost its lease" in finished.error, finished
    refused = scheduler.finished("job_c")
    assert refused.outcome is Outcome.INTERRUPTED, refused
    assert refused.error is not None, refused
    assert "never reached a worker" in refused.error, refused

    # An answer to stats sent after the freeze renews the lease, and starts run again.
    scheduler.lease = LEASE
    scheduler.expect(SupervisorStats, lambda m: m.sent_at > expiry)
    scheduler.send(run_job("job_d", {}))
    assert scheduler.finished("job_d").outcome is Outcome.SUCCEEDED


def test_a_silent_scheduler_makes_the_supervisor_kill_its_attempts_after_the_lease(
    cluster_node: tuple[subprocess.Popen[bytes], FakeScheduler, Path], tmp_path: Path
) -> None:
    _, scheduler, _ = cluster_node
    scheduler.expect(SupervisorHello)
    # A clustered node starts nothing before its first lease: an attempt it could not lose.
    scheduler.send(run_job("job_early", {}))
    early = scheduler.finished("job_early")
    assert early.outcome is Outcome.INTERRUPTED, early
    assert early.error is not None, early
    assert "no lease" in early.error, early

    scheduler.lease = LEASE
    scheduler.expect(SupervisorStats)
    scheduler.send(run_job("job_a", {"release_file": str(tmp_path / "never")}))
    worker = scheduler.expect(AttemptStarted, lambda m: m.job_id == "job_a").pid
    # The lease holds while answers come: the attempt outlives several lease lengths.
    until = time.monotonic() + 3 * LEASE
    scheduler.pump_until(lambda: time.monotonic() > until, what=f"{3 * LEASE} s of renewals")
    assert not gone(worker)

    scheduler.lease = 0.0
    expiry = scheduler.expiry
    finished = scheduler.finished("job_a")
    assert time.monotonic() >= expiry
    assert finished.outcome is Outcome.CRASHED, finished
    assert finished.error is not None, finished
    assert "lost its lease" in finished.error, finished
    wait_until(lambda: gone(worker), timeout=10, what="the worker to be gone")


def test_a_supervisor_blocked_on_a_stopped_zygote_still_kills_at_the_lease(
    cluster_node: tuple[subprocess.Popen[bytes], FakeScheduler, Path], tmp_path: Path
) -> None:
    """The mirror case: the zygote reads nothing (stopped, stuck), so requests for workers fill its queue
    and the supervisor waits for room; it must still kill at the lease, through the worker's pidfd."""
    _, scheduler, log = cluster_node
    scheduler.expect(SupervisorHello)
    scheduler.lease = LEASE
    scheduler.expect(SupervisorStats)
    scheduler.send(run_job("job_a", {"release_file": str(tmp_path / "never")}))
    worker = scheduler.expect(AttemptStarted, lambda m: m.job_id == "job_a").pid
    zygote = psutil.Process(worker).ppid()
    os.kill(zygote, signal.SIGSTOP)
    try:
        wait_until(lambda: stopped(zygote), what="the zygote to be stopped")
        scheduler.lease = 0.0
        # Each waits for a worker and asks the zygote for one more: more requests than its socket holds
        # (its send buffer: about 280 small packets here).
        for n in range(400):
            scheduler.send(run_job(f"job_{n}", {}))
        wait_until(lambda: gone(worker), timeout=15, what="the supervisor to kill the worker")
        assert stopped(zygote), "the supervisor killed it, not the zygote"
        assert "handing back" in log.read_text()
    finally:
        os.kill(zygote, signal.SIGCONT)
    finished = scheduler.finished("job_a")
    assert finished.outcome is Outcome.CRASHED, finished
    assert finished.error is not None, finished
    assert "lost its lease" in finished.error, finished


def test_a_zygote_blocked_on_a_frozen_supervisor_s_full_queue_still_kills_at_the_lease() -> None:
    """A frozen supervisor reads none of the zygote's packets, and a Unix socket's send buffer holds a few
    hundred: a zygote that waited for room without looking at the lease would never kill anything."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    shared, fd = SharedExpiry.create()
    zygote = Zygote(theirs, SharedExpiry.attach(os.dup(fd)))
    worker = subprocess.Popen(["sleep", "60"], start_new_session=True)  # leads its own group, as a worker does
    zygote.children.add(worker.pid)
    try:
        with contextlib.suppress(BlockingIOError):
            while True:  # fill the queue, as exit reports do while the supervisor is stopped
                theirs.send(b"x", socket.MSG_DONTWAIT)
        shared.write(time.monotonic() + 0.3)
        sender = threading.Thread(target=zygote._send, args=(WorkersExited([]),))
        sender.start()
        wait_until(lambda: worker.poll() is not None, timeout=10, what="the zygote to kill the worker")
        assert worker.returncode == -signal.SIGKILL
        ours.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while ours.recv(MAX_PACKET):  # the supervisor runs again: the report goes through
                pass
        sender.join(10)
        assert not sender.is_alive()
    finally:
        worker.kill()
        worker.wait()
        for sock in (ours, theirs, zygote._wake_r, zygote._wake_w):
            sock.close()
        shared.close()
        os.close(fd)
