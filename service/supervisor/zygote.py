"""The zygote: a fork server for workers, so that the supervisor never forks itself.

It is a fresh interpreter (`python -m service.supervisor.zygote`) that imports only what a worker needs
(msgspec, the handler registry with the built-in and the user's handler modules, the worker loop), freezes
that heap (`gc.freeze`), and from then on only forks on request. Each child gets a socketpair end and
stdout/stderr pipes; the zygote hands the other ends and a pidfd of the child to the supervisor over its
control socket (SCM_RIGHTS) and closes its own copies, so a child inherits nothing of any other worker.

Why: a fork copies the parent's page tables and every page either side writes afterwards. Forking from the
supervisor made it fault on its own heap after every fork and made every child close the descriptors of
every other worker; the zygote's heap is small, never written between forks, and holds no worker's
descriptors.

Only a parent can wait for a child, so the zygote reaps its children and reports their exit codes
(`WorkersExited`). It dies with the supervisor (PR_SET_PDEATHSIG) and its workers die with it; the
supervisor starts a new one when it dies (see `Supervisor._zygote_lost`).

It also enforces the executor's lease when the supervisor cannot (frozen by SIGSTOP, stalled): the
supervisor writes the lease's expiry into a shared memory region (`lease.SharedExpiry`), the zygote looks
at it at least every `LEASE_CHECK_SECONDS`, and once the expiry has passed it SIGKILLs every worker's
process group, once per expiry. Idle spares go too: it cannot tell them apart, and they are cheap.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from service.processes import die_with_parent, name_process
from service.protocol import SpawnWorkers, WorkerForked, WorkersExited, ZygoteReady, ZygoteToSupervisor
from service.supervisor.lease import NO_LEASE, SharedExpiry

# What travels with a `WorkerForked` packet, in this order.
FDS_PER_WORKER = 4  # the worker's socket (supervisor end), its stdout and stderr read ends, its pidfd
MAX_PACKET = 1 << 16  # the largest control message either side sends (exits are batched below it)
_EXITS_PER_PACKET = 1000
# How late past the lease's expiry the zygote may notice it: well inside the leader's margin of a kill
# grace plus one second (ARCHITECTURE.md, "The executor's lease").
LEASE_CHECK_SECONDS = 0.1

_encoder = msgspec.msgpack.Encoder()
_to_supervisor = msgspec.msgpack.Decoder(ZygoteToSupervisor)
_to_zygote = msgspec.msgpack.Decoder(SpawnWorkers)
_log = logging.getLogger("taskq.zygote")


class ZygoteGone(ConnectionError):
    """The zygote's control socket closed: it died (or is exiting)."""


# ---------------------------------------------------------------------------------------- supervisor side


class ZygoteLink:
    """The supervisor's handle on one zygote process: start it, ask it for workers, read what it says."""

    def __init__(self, handler_modules: tuple[str, ...], lease_fd: int) -> None:
        """`lease_fd`: the supervisor's `SharedExpiry` region, which the zygote maps read-only."""
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        # The supervisor may import handler modules from paths its own parent set up (multiprocessing
        # passes sys.path to a spawned child); the zygote must find the same ones.
        env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        command = [sys.executable, "-m", "service.supervisor.zygote", str(theirs.fileno()), str(os.getpid())]
        self.process = subprocess.Popen(
            [*command, str(lease_fd), *handler_modules],
            pass_fds=[theirs.fileno(), lease_fd],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.sock.setblocking(False)
        self.pid = self.process.pid

    def spawn(self, count: int, while_waiting: Callable[[], None]) -> None:
        """Ask for `count` more spares; each arrives as a `WorkerForked`. Raises ZygoteGone.
        `while_waiting` runs every `LEASE_CHECK_SECONDS` while the zygote reads nothing (stopped or stuck),
        so that the supervisor still enforces its lease."""
        packet = _encoder.encode(SpawnWorkers(count))
        while True:
            try:
                self.sock.send(packet)
                return
            except BlockingIOError:  # its queue is full of requests it has not read yet: wait for room
                if not select.select([], [self.sock], [], LEASE_CHECK_SECONDS)[1]:
                    while_waiting()
            except OSError as exc:
                raise ZygoteGone(str(exc)) from exc

    def receive(self) -> list[tuple[Any, list[int]]]:
        """Every message waiting now, each with the descriptors it carried. Raises ZygoteGone at EOF."""
        received: list[tuple[Any, list[int]]] = []
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, MAX_PACKET, FDS_PER_WORKER)
            except BlockingIOError:
                return received
            except OSError as exc:
                raise ZygoteGone(str(exc)) from exc
            if not data:
                for fd in fds:
                    os.close(fd)
                raise ZygoteGone("the zygote closed its control socket")
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):  # cannot happen with our own sizes
                for fd in fds:
                    os.close(fd)
                raise ZygoteGone(f"truncated control message (flags {flags:#x})")
            received.append((_to_supervisor.decode(data), fds))

    def close(self) -> int | None:
        """Stop it (its children die with it) and reap it: its exit code, None if unknown."""
        self.sock.close()
        with contextlib.suppress(OSError):
            self.process.kill()
        try:
            return self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            return None


# --------------------------------------------------------------------------------------------- zygote side


class Zygote:
    def __init__(self, control: socket.socket, lease: SharedExpiry) -> None:
        self.control = control
        self.lease = lease
        self.pid = os.getpid()
        self._wake_r, self._wake_w = socket.socketpair()
        self.children: set[int] = set()  # forked and not yet reaped: each leads its own process group
        self.enforced = NO_LEASE  # the expiry whose lapse it last acted on

    def run(self) -> None:
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        # A handler, so that SIGCHLD writes to the wakeup fd (the default disposition would not).
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        from service.supervisor import memory

        self._send(ZygoteReady(self.pid, memory.resident_bytes(self.pid) or 0))
        while True:
            ready, _, _ = select.select([self.control, self._wake_r], [], [], LEASE_CHECK_SECONDS)
            # First, before any fork: after a freeze of this process (or of the whole node) the workers
            # may have run on past the lease already.
            self._enforce_lease()
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while self._wake_r.recv(512):
                        pass
                self._reap()
            if self.control in ready:
                data = self.control.recv(MAX_PACKET)
                if not data:
                    return  # the supervisor let go: its spares die with us
                request = _to_zygote.decode(data)
                for _ in range(request.count):
                    self._spawn()
                    self._enforce_lease()  # a long burst of forks must not delay it either
                self._reap()  # children that already ended while we forked

    def _send(self, message: Any, fds: list[int] | None = None) -> None:
        packet = _encoder.encode(message)
        while True:
            try:
                if fds:
                    socket.send_fds(self.control, [packet], fds, socket.MSG_DONTWAIT)
                else:
                    self.control.send(packet, socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                # The supervisor has read nothing for a while (the socket's send buffer holds a few hundred
                # packets): it may be frozen, which is when the lease matters. Wait for room, checking it.
                select.select([], [self.control], [], LEASE_CHECK_SECONDS)
                self._enforce_lease()

    def _reap(self) -> None:
        exits: list[tuple[int, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self.children.discard(pid)
            exits.append((pid, os.waitstatus_to_exitcode(status)))
        for start in range(0, len(exits), _EXITS_PER_PACKET):
            self._send(WorkersExited(exits[start : start + _EXITS_PER_PACKET]))

    def _spawn(self) -> None:
        parent_end, child_end = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            self._child(child_end, [parent_end.fileno(), out_r, err_r], out_w, err_w)
        self.children.add(pid)
        pidfd = os.pidfd_open(pid)  # made here, where the pid cannot yet have been reused
        try:
            self._send(WorkerForked(pid), [parent_end.fileno(), out_r, err_r, pidfd])
        finally:
            parent_end.close()
            child_end.close()
            for fd in (out_r, out_w, err_r, err_w, pidfd):
                os.close(fd)

    def _enforce_lease(self) -> None:
        """Once the supervisor's lease has lapsed, SIGKILL every worker's process group, once per expiry.
        The pids are safe to use: these are our children and not yet reaped, so no other process has one,
        and a worker's group id stays its pid. Their exits reach the supervisor as usual (`WorkersExited`),
        which reports their attempts crashed."""
        expiry = self.lease.read()
        if expiry == NO_LEASE or expiry == self.enforced or time.monotonic() < expiry:
            return
        self.enforced = expiry
        for pid in self.children:
            with contextlib.suppress(OSError):  # the whole group is gone already
                os.killpg(pid, signal.SIGKILL)
        _log.warning(
            "the supervisor's lease lapsed %.2f s ago without renewal: killed %d workers",
            time.monotonic() - expiry,
            len(self.children),
        )

    def _child(self, sock: socket.socket, theirs: list[int], out_w: int, err_w: int) -> None:
        """The forked worker: let go of the zygote's descriptors and signal setup, then run jobs."""
        code = 0
        try:
            # A process group of its own: a kill of the attempt reaches whatever the handler started too.
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # how the supervisor asks a job to stop
            for own in (self.control, self._wake_r, self._wake_w):
                own.close()
            self.lease.close()
            for fd in theirs:
                os.close(fd)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.close(out_w)
            os.close(err_w)
            from service.supervisor import worker

            worker.run(sock, self.pid)
        except BaseException:
            code = 1
        finally:
            os._exit(code)


def main(argv: list[str]) -> None:
    """`python -m service.supervisor.zygote <control fd> <supervisor pid> <lease fd> [handler module ...]`."""
    control_fd, supervisor_pid, lease_fd, modules = int(argv[0]), int(argv[1]), int(argv[2]), argv[3:]
    die_with_parent(supervisor_pid)
    # The supervisor decides when workers stop; a terminal's Ctrl-C or a group-wide SIGTERM must not kill
    # the zygote (and with it every running job) behind its back. Workers inherit SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    name_process("zygote")
    # Its own logger, not the root's: workers inherit this heap, and a handler's logging must stay as it is.
    from service.logs import JsonFormatter

    to_stderr = logging.StreamHandler(sys.stderr)  # the supervisor's stderr, which the zygote inherits
    to_stderr.setFormatter(JsonFormatter("zygote"))
    _log.addHandler(to_stderr)
    _log.setLevel(logging.INFO)
    _log.propagate = False
    from service import handlers, worker_access
    from service.supervisor import worker

    worker_access.adopt()
    handlers.load(modules)
    worker.prepare()
    worker.warm_up()
    # The heap as it is now is what every worker shares: keep the collector of every child (and ours)
    # from walking it, and so from writing to (and copying) its pages.
    gc.collect()
    gc.freeze()
    Zygote(socket.socket(fileno=control_fd), SharedExpiry.attach(lease_fd)).run()


if __name__ == "__main__":
    main(sys.argv[1:])
