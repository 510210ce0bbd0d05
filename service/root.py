"""The root supervisor: `taskq serve`. Starts the database (embedded or not), applies migrations, then
starts, watches and restarts the actor processes, the way OTP's `supervisor` does (supervisor.erl):

* child specs with a restart type and a shutdown grace, started in order, stopped in reverse order;
* one_for_one: a child that dies is restarted alone;
* restart intensity: more than `MAX_RESTARTS` restarts within `RESTART_WINDOW_SECONDS` stops the whole
  service with an error, instead of crash-looping forever;
* shutdown protocol: SIGTERM, wait the child's grace while watching the process itself, then SIGKILL.

The root holds no job state. Its children are bound to it by PR_SET_PDEATHSIG, so a `kill -9` of the root
takes the whole tree down; the next start recovers from PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.embedded_pg import EmbeddedPostgres
from service.processes import name_process
from service.settings import Settings
from service.store.migrations import migrate

log = logging.getLogger("taskq.root")

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 30.0
DATABASE_RETRY_SECONDS = 0.5  # first wait before another try at starting the embedded PostgreSQL


class KeysRequired(RuntimeError):
    """Bound beyond loopback with no key to check: the service would be open to the network."""


class NodeRefused(RuntimeError):
    """Another node runs on this database and the two cannot work together (no shared cluster secret)."""


class RestartIntensityExceeded(RuntimeError):
    """A child kept dying: the service stops rather than crash-loop."""


@dataclass
class ChildSpec:
    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    shutdown_grace: float
    process: multiprocessing.process.BaseProcess | None = None
    restarts: deque[float] = field(default_factory=deque)  # recent restart times, for the intensity limit
    restart_count: int = 0  # all restarts, passed to the child (it exports them as a metric)


class RootSupervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.children: list[ChildSpec] = []
        self.stop_signals = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self.embedded: EmbeddedPostgres | None = None
        self.postmaster_fd: int | None = None  # a pidfd of the embedded postmaster: readable once it exits
        self.postmaster_pid: int | None = None
        self.database_lost_at: float | None = None  # monotonic; set while the embedded server is down
        self.database_retry_at = 0.0
        self.database_retry_delay = DATABASE_RETRY_SECONDS
        self.url = ""
        self.runtime_dir = ""

    def serve(self) -> int:
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            url = self._database()
            if self.stop_signals:
                return 0
            migrate(url)
            self._check_auth(url)
            self._check_nodes(url)
            self.runtime_dir = tempfile.mkdtemp(prefix="taskq-")
            self._start_children(url)
            self._watch()
            self._drain()
            return 0
        except (KeysRequired, NodeRefused) as exc:
            log.error("%s", exc)
            return 2
        except RestartIntensityExceeded as exc:
            log.error("%s", exc)
            return 1
        finally:
            self._stop_children()
            if self.postmaster_fd is not None:
                os.close(self.postmaster_fd)
            if self.embedded is not None:
                self.embedded.stop()
            if self.runtime_dir:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
            log.info("stopped")

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_signals += 1

    def _database(self) -> str:
        if self.settings.database_url:
            return self.settings.database_url
        self.embedded = EmbeddedPostgres(self.settings.data_dir)
        url = self.embedded.start()
        self.url = url
        self._watch_postmaster()
        log.info("embedded PostgreSQL running in %s (pid %s)", self.embedded.pgdata, self.postmaster_pid)
        return url

    def _watch_postmaster(self) -> None:
        """The embedded postmaster is not our child (pg_ctl daemonizes it), so it is watched with a pidfd,
        which becomes readable when it exits, whoever its parent is."""
        assert self.embedded is not None
        pid = self.embedded.postmaster_pid()
        if pid is None:
            return
        try:
            self.postmaster_fd = os.pidfd_open(pid)
        except (OSError, AttributeError):  # gone already (the next check notices), or no pidfd here
            self.postmaster_fd = None
            return
        self.postmaster_pid = pid

    def _database_exited(self) -> None:
        """The embedded PostgreSQL died (the OOM killer, a crash, a stray SIGQUIT): this service owns it,
        so it starts it again. Meanwhile the actors do what they do in any outage: the scheduler waits
        for the database, the API answers 503 and is not ready, the supervisor keeps its workers'
        results until a scheduler acknowledges them."""
        if self.postmaster_fd is not None:
            os.close(self.postmaster_fd)
        self.postmaster_fd = None
        log.error("embedded PostgreSQL (pid %s) exited; starting it again", self.postmaster_pid)
        self.database_lost_at = self.database_retry_at = time.monotonic()
        self.database_retry_delay = DATABASE_RETRY_SECONDS

    def _restart_database(self) -> None:
        assert self.embedded is not None
        assert self.database_lost_at is not None
        dead = self.postmaster_pid
        try:
            url = self.embedded.start()
            pid = self.embedded.postmaster_pid()
            if pid is None or pid == dead:  # adopted what is left of the dead one (a pid file, a zombie)
                raise RuntimeError(f"postmaster {dead} is not gone yet")
        except Exception as exc:
            log.warning("embedded PostgreSQL did not start (%s); retrying in %.1fs", exc, self.database_retry_delay)
            self.database_retry_at = time.monotonic() + self.database_retry_delay
            self.database_retry_delay = min(self.database_retry_delay * 2, 5.0)
            return
        # The actors keep their URL: pgserver derives the socket directory from the data directory alone.
        assert url == self.url, (url, self.url)
        self._watch_postmaster()
        log.info(
            "embedded PostgreSQL (pid %s) back after %.1fs",
            self.postmaster_pid,
            time.monotonic() - self.database_lost_at,
        )
        self.database_lost_at = None

    def _check_auth(self, url: str) -> None:
        """TASKQ_AUTH=auto keeps a loopback service without keys open (the README's curl examples work);
        bound to another address, such a service would be open to the network, so it does not start."""
        from service.settings import is_loopback

        settings = self.settings
        if settings.auth == "off":
            log.warning("TASKQ_AUTH=off: the API accepts every request without a key")
            return
        if settings.auth == "on" or settings.bootstrap_key is not None or is_loopback(settings.host):
            return
        if not _any_api_key(url):
            raise KeysRequired(
                f"TASKQ_HOST={settings.host} is not a loopback address and no API key exists: set "
                "TASKQ_BOOTSTRAP_KEY, create one with `taskq keys create`, or set TASKQ_AUTH=off explicitly"
            )

    def _check_nodes(self, url: str) -> None:
        """Two nodes on one database either form a cluster (the same TASKQ_CLUSTER_SECRET) or must not
        both run: two single nodes would each believe they own every job."""
        settings = self.settings
        within = max(3.0, 2 * settings.leader_lease_seconds)
        # A node seen lately may be one that was just killed (and this is its restart under another name):
        # it is refused only if it is still heard from once a whole window has passed.
        deadline = time.monotonic() + within + 1.0
        while True:
            others = _other_live_nodes(url, settings.node, within)
            conflict = others if not settings.clustered else [o for o in others if not o[1]]
            if not conflict or time.monotonic() >= deadline or self.stop_signals:
                break
            time.sleep(0.5)
        if not settings.clustered and others:
            raise NodeRefused(
                f"another taskq node ({', '.join(name for name, _ in others)}) runs on this database: set the same "
                "TASKQ_CLUSTER_SECRET on every node to run them as one cluster, or use another database"
            )
        singles = [name for name, clustered in others if not clustered]
        if settings.clustered and singles:
            raise NodeRefused(
                f"a single taskq node without TASKQ_CLUSTER_SECRET ({', '.join(singles)}) runs on this database: "
                "stop it, or give it the cluster's secret"
            )

    def _start_children(self, url: str) -> None:
        from service import worker_access
        from service.api import server
        from service.scheduler import actor as scheduler
        from service.supervisor import actor as supervisor

        sock = os.path.join(self.runtime_dir, "scheduler.sock")
        worker_access.issue(self.settings)  # the credential and address workers submit with, for every actor
        me = os.getpid()
        grace = self.settings.kill_grace_seconds
        self.children = [
            ChildSpec("scheduler", scheduler.main, (self.settings, sock, url, me), 10.0),
            ChildSpec("supervisor", supervisor.main, (self.settings, sock, me), grace + 5.0),
            ChildSpec("api", server.main, (self.settings, url, sock, me), 8.0),
        ]
        for child in self.children:
            self._start(child)
        log.info(
            "taskq serving on http://%s:%d (pids: %s)",
            self.settings.host,
            self.settings.port,
            ", ".join(f"{c.name}={c.process.pid if c.process else '?'}" for c in self.children),
        )

    def _start(self, child: ChildSpec) -> None:
        args = (*child.args, child.restart_count)
        process = self.context.Process(target=child.target, args=args, name=f"taskq-{child.name}")
        process.start()
        child.process = process

    def _watch(self) -> None:
        while not self.stop_signals:
            sentinels = {c.process.sentinel: c for c in self.children if c.process is not None}
            waitables: list[Any] = [*sentinels, self._wake_r]
            if self.postmaster_fd is not None:
                waitables.append(self.postmaster_fd)
            timeout = 5.0
            if self.database_lost_at is not None:
                timeout = max(0.0, self.database_retry_at - time.monotonic())
            ready = multiprocessing.connection.wait(waitables, timeout=timeout)
            for item in ready:
                if item is self._wake_r:
                    self._drain_wakeups()
                    continue
                if self.stop_signals:
                    break
                assert isinstance(item, int)
                if item == self.postmaster_fd:
                    self._database_exited()
                    continue
                self._restart(sentinels[item])
            if self.database_lost_at is not None and time.monotonic() >= self.database_retry_at:
                self._restart_database()

    def _restart(self, child: ChildSpec) -> None:
        assert child.process is not None
        child.process.join(0)
        log.warning("%s (pid %s) exited with %s; restarting", child.name, child.process.pid, child.process.exitcode)
        child.restart_count += 1
        now = time.monotonic()
        child.restarts.append(now)
        while child.restarts and child.restarts[0] < now - RESTART_WINDOW_SECONDS:
            child.restarts.popleft()
        if len(child.restarts) > MAX_RESTARTS:
            raise RestartIntensityExceeded(
                f"{child.name} restarted {len(child.restarts)} times within {RESTART_WINDOW_SECONDS:.0f}s; "
                "stopping the service"
            )
        self._start(child)

    def _drain(self) -> None:
        """Graceful shutdown, the one component that owns it (as Oban's Watchman does).

        SIGUSR1 tells the api to refuse new jobs (readiness false) and the drain's owner to start nothing
        new, give running attempts the grace, then interrupt them so they go back to pending unused. The
        owner exits by itself once nothing runs: that is the "drained" event. A second signal ends the
        grace now.

        On a single node the owner is the scheduler. In a cluster a drain is this node's only, so the
        owner is the supervisor: it tells the leader to place nothing more here and exits once the leader
        has acknowledged every report; the other nodes go on, and if this node's scheduler leads it hands
        the lease over when the root stops it afterwards (instead of letting it expire).
        """
        by_name = {c.name: c for c in self.children}
        owner_name, second = (
            ("supervisor", signal.SIGTERM) if self.settings.clustered else ("scheduler", signal.SIGUSR2)
        )
        owner = by_name.get(owner_name)
        if owner is None or owner.process is None or not owner.process.is_alive():
            return
        for name in ("api", owner_name):
            process = by_name[name].process
            if process is not None and process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGUSR1)
        log.info("draining: running jobs get up to %.0fs", self.settings.shutdown_grace_seconds)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + self.settings.kill_grace_seconds + 10
        # The drain began with the first signal: any other is the second, even one that arrived while
        # the drain was being started (a test, or an impatient operator, can be that quick).
        signals_seen = 1
        while owner.process.is_alive() and time.monotonic() < deadline:
            multiprocessing.connection.wait([owner.process.sentinel, self._wake_r], timeout=1.0)
            self._drain_wakeups()
            if self.stop_signals > signals_seen and owner.process.pid is not None:
                signals_seen = self.stop_signals
                log.info("second signal: interrupting running jobs now")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(owner.process.pid, second)
        if owner.process.is_alive():
            log.warning("the %s did not drain in time; stopping it", owner_name)
        else:
            log.info("drained")

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except BlockingIOError:
            pass

    def _stop_children(self) -> None:
        for child in reversed(self.children):
            process = child.process
            if process is None or not process.is_alive():
                continue
            process.terminate()
            process.join(child.shutdown_grace)
            if process.is_alive():
                log.warning("%s did not stop within %.0fs; killing it", child.name, child.shutdown_grace)
                process.kill()
                process.join(5)


def _other_live_nodes(url: str, node: str, within: float) -> list[tuple[str, bool]]:
    import asyncio

    import asyncpg

    from service.store import gateway

    async def ask() -> list[tuple[str, bool]]:
        conn = await asyncpg.connect(url)
        try:
            return await gateway.other_live_nodes(conn, node, within)
        finally:
            await conn.close()

    return asyncio.run(ask())


def _any_api_key(url: str) -> bool:
    import asyncio

    import asyncpg

    from service.store import gateway

    async def ask() -> bool:
        conn = await asyncpg.connect(url)
        try:
            return await gateway.any_api_key(conn)
        finally:
            await conn.close()

    return asyncio.run(ask())


def serve(settings: Settings) -> int:
    from service.logs import configure_logging

    configure_logging(settings.log_level, "root")
    name_process("root supervisor")
    return RootSupervisor(settings).serve()
