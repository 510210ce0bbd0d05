"""The scheduler actor: a thin asyncio loop around `SchedulerCore`.

Each turn it takes every message that has arrived (submissions, cancels, worker reports), feeds them to
the core with the current time, lets the core dispatch, and then carries out the effects in order:

1. one statement with every state change of the turn (`rows.py` maps the effects to rows), fenced by the
   leader's term in a cluster;
2. only after the commit: `RunJob`/`KillJob` to each node's supervisor, replies to the APIs, acks of
   reports, the turn's stream events.

So nothing is dispatched that is not durably `running`, and no client hears of a change that could
still be lost. If a write fails the actor exits and the root restarts it: the new one rebuilds its whole
state from PostgreSQL, which is always the truth.

Around the loop: `leadership.py` (the lease, and the relay a candidate runs while another node leads),
`links.py` (the peers and the executor nodes), `gauges.py` (metrics), `schedules.py` (cron firing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from service import handshake
from service.model import TERMINAL, Resources, Status
from service.processes import die_with_parent, name_process
from service.protocol import (
    Ack,
    ApiHello,
    AttemptBeat,
    AttemptFinished,
    AttemptStarted,
    CancelRequest,
    Events,
    ExplainQuery,
    HandlerLog,
    HealthQuery,
    JobEvent,
    KillJob,
    MetricsQuery,
    PositionQuery,
    RedriveRequest,
    Reply,
    RunJob,
    SchedulesChanged,
    StatsQuery,
    Submitted,
    SupervisorHello,
    SupervisorStats,
    SupervisorStopping,
    ToScheduler,
    TypeControl,
)
from service.scheduler import leadership
from service.scheduler.beats import Beat, Beats
from service.scheduler.core import Effects, SchedulerCore
from service.scheduler.gauges import gauges, measure
from service.scheduler.links import Client, Disconnected, Executors
from service.scheduler.rows import EventNumbers, restored_from_row, turn_rows
from service.scheduler.schedules import CronPass
from service.settings import Settings
from service.store import gateway
from service.store.gateway import LiveJob, LogRow, StartedJob
from service.telemetry import Telemetry
from service.transport import MAX_FRAME, AsyncChannel, ChannelClosed

log = logging.getLogger("taskq.scheduler")

CLOSE_SECONDS = 5.0  # longest wait for a graceful close of the database connections on the way out
# Retention deletes at most this many finished jobs per statement, between turns: a few milliseconds
# each, so that pruning a large backlog never holds up dispatch for long.
RETENTION_BATCH = 500

# Status changes kept for stream replay (?after=<seq>); older ones are pruned.
EVENT_WINDOW = 100_000
SWEEP_MARGIN_SECONDS = 60.0
# Worker pids and handler log lines change no scheduling decision: they wait (at most this long, or
# until a turn commits anyway) to share a commit with the next state change. A job that starts and
# ends within this window then costs one turn fewer (one statement, one commit).
DEFER_SECONDS = 0.05
DEFER_MAX_LINES = 5000
EVENT_COPY_THRESHOLD = 256  # from this many events in a turn, they are written with COPY

_json_decode = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass
class Turn:
    """What one turn must do after its commit, besides the core's effects."""

    replies: list[tuple[Client, Reply]] = field(default_factory=list)  # sent after the commit
    early: list[tuple[Client, Reply]] = field(default_factory=list)  # read-only answers: sent before it
    position_requests: list[tuple[Client, int, list[str]]] = field(default_factory=list)
    explain_requests: list[tuple[Client, int, str]] = field(default_factory=list)
    acks: list[tuple[Client, int]] = field(default_factory=list)  # each report's seq, to its own supervisor
    logs: list[LogRow] = field(default_factory=list)
    pids: list[tuple[str, int, int]] = field(default_factory=list)
    events: list[JobEvent] = field(default_factory=list)
    beats: list[Beat] = field(default_factory=list)


class SchedulerActor:
    def __init__(self, settings: Settings, socket_path: str, database_url: str, restarts: int = 0) -> None:
        self.settings = settings
        self.restarts = {"scheduler": restarts, "supervisor": 0, "api": 0}
        # Jobs in each terminal status, counted once at start-up and kept current: /stats and the DLQ
        # size without counting the whole table.
        self.terminal_counts: Counter[str] = Counter()
        self.socket_path = socket_path
        self.database_url = database_url
        self.node = settings.node
        self.clustered = settings.clustered
        # A single node declares its capacity; a cluster's leader learns each node's from its Hello.
        self.core = SchedulerCore(
            None if self.clustered else Resources(settings.cpu_units, settings.memory_mb),
            settings.aging_interval_seconds,
            kill_grace=settings.kill_grace_seconds,
            node=self.node,
        )
        # (None, None) is the wake-up put by the SIGTERM handler.
        self.inbox: asyncio.Queue[tuple[Client | None, ToScheduler | Disconnected | None]] = asyncio.Queue()
        # Each node's supervisor link; in a cluster, a node silent for longer than its executor's lease
        # (plus the kill grace and a second) has its attempts closed as crashed (ARCHITECTURE.md, "Cluster").
        silence_limit = settings.executor_lease_seconds + settings.kill_grace_seconds + 1.0
        self.executors = Executors(self.core, self.clustered, silence_limit)
        self.sent_largest: list[int] | None = None  # the largest node's capacity as the APIs last heard it
        self.lease: leadership.Lease | None = None
        self.term: int | None = None  # the leader's term, in a cluster
        self.leading = False
        self.api_clients: set[Client] = set()
        self.events = EventNumbers()  # the stream's sequence: the last number handed out
        self.pruned_up_to = 0
        self.started_at = time.time()
        self.sweep_needed = False
        self.stopping = False
        self.drain_deadline: float | None = None  # epoch seconds; set while draining
        # Writes that wait for the next commit (see DEFER_SECONDS), in arrival order.
        self.deferred_logs: list[LogRow] = []
        self.deferred_pids: list[tuple[str, int, int]] = []
        self.deferred_since: float | None = None  # monotonic time of the oldest
        self.beats = Beats()  # running attempts' heartbeats and progress, deferred the same way
        self.pruning: asyncio.Task[None] | None = None
        kept = [k for k in (settings.retention_succeeded, settings.retention_failed) if k is not None]
        # Checked a tenth as often as the shortest retention: a job outlives it by at most ~10%.
        self.retention_interval = min(60.0, max(0.5, min(kept) / 10)) if kept else None
        self.next_retention = time.time() if kept else None  # epoch seconds of the next pass
        self.cron = CronPass(settings.default_timeout_seconds)  # fires the cron schedules between turns

    async def run(self) -> None:
        self.telemetry = Telemetry(
            "scheduler",
            gauges=gauges(self.core, self.terminal_counts, self.restarts, self.executors.stats),
            node=self.node,
        )
        for status in TERMINAL:  # at zero from the start: a rate() over it needs the series to exist
            self.telemetry.add("taskq_jobs_pruned", 0, status=status.value)
        loop = asyncio.get_running_loop()
        servers: list[asyncio.Server] = []
        keeper: asyncio.Task[None] | None = None
        if self.clustered:
            self.lock_conn = None
            self.pool = await _connect_with_backoff(self.database_url)
            # Listening before the campaign: the address in the lease row must answer from the moment it
            # is published. Links that arrive while this process does not lead are refused.
            settings = self.settings
            server_tls = client_tls = None
            if settings.cluster_tls_cert and settings.cluster_tls_key and settings.cluster_tls_ca:
                server_tls = handshake.server_tls(
                    settings.cluster_tls_cert, settings.cluster_tls_key, settings.cluster_tls_ca
                )
                client_tls = handshake.client_tls(
                    settings.cluster_tls_cert, settings.cluster_tls_key, settings.cluster_tls_ca
                )
            cluster = await asyncio.start_server(
                self._serve_remote, host="0.0.0.0", port=settings.cluster_port, limit=MAX_FRAME, ssl=server_tls
            )
            servers.append(cluster)
            port = cluster.sockets[0].getsockname()[1]
            address = f"{self.settings.advertise_host}:{port}"
            relay = leadership.Relay(self._secret(), client_tls)
            servers.append(
                await asyncio.start_unix_server(
                    lambda r, w: self._serve_local(r, w, relay), path=self.socket_path, limit=MAX_FRAME
                )
            )
            self.lease = leadership.Lease(self.pool, self.node, address, self.settings.leader_lease_seconds, relay)
            campaign = asyncio.ensure_future(self.lease.campaign())
            loop.add_signal_handler(signal.SIGTERM, campaign.cancel)
            loop.add_signal_handler(signal.SIGUSR1, campaign.cancel)
            try:
                self.term = await campaign
            except asyncio.CancelledError:  # stopped (or drained) while a standby: nothing of ours runs
                log.info("stopping as a standby candidate")
                await self._close_standby(servers)
                return
            keeper = asyncio.create_task(self.lease.keep())
        else:
            self.lock_conn = await self._acquire_ownership()
            self.pool = await _connect_with_backoff(self.database_url)
        await self._rebuild()
        if not self.clustered:
            servers.append(await asyncio.start_unix_server(self._serve_client, path=self.socket_path, limit=MAX_FRAME))
        self.leading = True
        log.info("scheduler ready: %d live jobs, %s in use", len(self.core.jobs), self.core.used)
        loop.add_signal_handler(signal.SIGTERM, self._stop)
        loop.add_signal_handler(signal.SIGUSR1, self._begin_drain)
        loop.add_signal_handler(signal.SIGUSR2, self._end_grace)
        heartbeat = None if self.clustered else asyncio.create_task(self._heartbeat())
        try:
            while not self.stopping:
                await self._turn()
                if self.next_retention is not None and time.time() >= self.next_retention:
                    await self._retain()
                draining = self.drain_deadline is not None
                if self.cron.due(time.time(), draining) and await self.cron.run(self.pool, self.core.jobs.__contains__):
                    self.inbox.put_nowait((None, None))  # wake the turn that admits the fired jobs
                if self.drain_deadline is not None and not self.core.running:
                    log.info("drained: no attempt is running; the scheduler stops")
                    break
            if self.deferred_since is not None:  # the last pids and log lines, before leaving
                await self._commit(Effects(), Turn())
            for supervisor in list(self.executors.links.values()):  # let the last acknowledgements reach them
                with contextlib.suppress(ChannelClosed):
                    await supervisor.channel.drain()
            if self.lease is not None:
                await self.lease.release()
            with contextlib.suppress(Exception):  # a clean stop: this node may start again under another name
                await asyncio.wait_for(gateway.remove_node(self.pool, self.node), CLOSE_SECONDS)
        finally:
            for task in (keeper, heartbeat):
                if task is not None:
                    task.cancel()
            for server in servers:
                server.close()
            # Bounded: after a failed write the database may be gone, and a graceful close would wait on a
            # dead socket while the root waits for this process to exit before it starts the next one.
            try:
                await asyncio.wait_for(self.pool.close(), CLOSE_SECONDS)
            except Exception:
                self.pool.terminate()
            if self.lock_conn is not None:
                self.lock_conn.remove_termination_listener(_lost_ownership)
                try:
                    await self.lock_conn.close(timeout=CLOSE_SECONDS)
                except Exception:
                    self.lock_conn.terminate()

    async def _close_standby(self, servers: list[asyncio.Server]) -> None:
        for server in servers:
            server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(gateway.remove_node(self.pool, self.node), CLOSE_SECONDS)
        try:
            await asyncio.wait_for(self.pool.close(), CLOSE_SECONDS)
        except Exception:
            self.pool.terminate()

    def _secret(self) -> bytes:
        assert self.settings.cluster_secret is not None
        return self.settings.cluster_secret.value.encode()

    async def _heartbeat(self) -> None:
        """A single node says it is alive every second, so that a second node started on the same
        database without the cluster secret is refused (root.py) instead of racing this one."""
        while True:
            with contextlib.suppress(Exception):
                await gateway.node_heartbeat(self.pool, self.node, False)
            await asyncio.sleep(leadership.RENEW_SECONDS)

    async def _acquire_ownership(self) -> asyncpg.Connection:
        """Only the holder of the scheduler lock may schedule this database. If the lock's connection
        ends, another scheduler may take over at once, so this one exits (and is restarted as a standby)."""
        delay = 0.1
        while True:
            try:
                conn = await asyncpg.connect(self.database_url)
            except Exception as exc:  # the database may be starting or restarting: wait for it
                log.warning("database not reachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if await gateway.try_scheduler_lock(conn):
                conn.add_termination_listener(_lost_ownership)
                return conn
            await conn.close()
            log.info("another scheduler owns this database; waiting as a standby")
            await asyncio.sleep(1.0)

    def _stop(self) -> None:
        self.stopping = True
        self.inbox.put_nowait((None, None))

    def _begin_drain(self) -> None:
        """SIGUSR1 from the root: graceful shutdown. Nothing new starts; running attempts get the grace."""
        if self.drain_deadline is None:
            self.drain_deadline = time.time() + self.settings.shutdown_grace_seconds
            self.core.drain()
            log.info(
                "draining: %d attempts running, grace %.0fs",
                len(self.core.running),
                self.settings.shutdown_grace_seconds,
            )
        self.inbox.put_nowait((None, None))

    def _end_grace(self) -> None:
        """SIGUSR2 from the root (a second signal): interrupt what still runs, now."""
        self.drain_deadline = time.time()
        self.core.drain()
        self.inbox.put_nowait((None, None))

    # ------------------------------------------------------------------------------------------- clients

    async def _serve_local(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, relay: leadership.Relay
    ) -> None:
        """This node's supervisor or API, on the Unix socket: served here while this process leads,
        relayed to the leader otherwise (and refused while this process is taking over)."""
        if self.leading:
            await self._serve_client(reader, writer)
        elif self.term is None:
            await relay.serve(reader, writer)
        else:
            writer.close()

    async def _serve_remote(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Another node's supervisor or API, relayed by its scheduler process: after the handshake, and only
        while this process leads."""
        peer = writer.get_extra_info("peername")
        if not self.leading:
            writer.close()
            return
        try:
            await handshake.accept(reader, writer, self._secret())
        except handshake.HandshakeFailed as exc:
            log.warning("dropped a cluster link from %s: %s", peer, exc)
            writer.close()
            return
        await self._serve_client(reader, writer)

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Client(AsyncChannel(reader, writer, ToScheduler))
        try:
            while True:
                for message in await client.channel.receive_many():
                    self.inbox.put_nowait((client, message))
        except ChannelClosed:
            await self.inbox.put((client, Disconnected()))
        except msgspec.DecodeError:
            log.exception("undecodable frame from a %s client; dropping the connection", client.role)
            client.channel.close()
            await self.inbox.put((client, Disconnected()))
        except asyncio.CancelledError:
            client.channel.close()  # the actor is stopping: end quietly, the peer reconnects to the next one

    # ----------------------------------------------------------------------------------------------- turn

    async def _turn(self) -> None:
        now = time.time()
        deadline = self.drain_deadline if self.drain_deadline is not None and self.drain_deadline > now else None
        flush_at = None if self.deferred_since is None else now + self.deferred_since + DEFER_SECONDS - time.monotonic()
        timers = (
            self.core.next_wakeup(),
            deadline,
            flush_at,
            self.next_retention,
            self.core.controls.next_wakeup(),
            self.executors.next_expiry(now),
        )
        wakeups = [w for w in (*timers, self.cron.wake_at(draining=self.drain_deadline is not None)) if w is not None]
        timeout = max(0.0, min(wakeups) - now) if wakeups else None
        batch: list[tuple[Client | None, ToScheduler | Disconnected | None]] = []
        get = asyncio.ensure_future(self.inbox.get())
        done, _ = await asyncio.wait({get}, timeout=timeout)
        if get in done:
            batch.append(get.result())
        else:
            get.cancel()  # a cancelled Queue.get never takes an item
        while not self.inbox.empty():
            batch.append(self.inbox.get_nowait())
        now = time.time()
        turn_started = time.perf_counter()
        turn = Turn()
        redrives = await self._load_redrives(batch)
        dep_status = await self._statuses_of_unknown_deps(batch, redrives)
        for fired in self.cron.take_fired():  # committed by the last cron pass, like a Submitted notice's jobs
            turn.events.append(
                self.events.event(now, fired.job_id, fired.type, fired.priority, fired.status, "submitted")
            )
            self.core.admit(fired, dep_status, now)
        for client, message in batch:
            if client is not None and message is not None:
                self._handle(client, message, dep_status, redrives, turn, now)
        if self.sweep_needed:
            self.sweep_needed = False
            await self._sweep(turn, now)
        if self.drain_deadline is not None and now >= self.drain_deadline:
            self.core.interrupt_running()
        self.executors.expire(now)
        self.core.tick(now)
        effects = self.core.take_effects()
        started_now = {start.job_id for start in effects.starts}
        for client, request_id, job_ids in turn.position_requests:
            started = {
                job_id: job.started_at
                for job_id in job_ids
                if (job := self.core.jobs.get(job_id)) is not None and job.started_at is not None
            }
            reply = Reply(
                request_id,
                positions=self._positions(job_ids),
                statuses=self._statuses(job_ids),
                started_at=started,
                live_jobs=len(self.core.jobs),
            )
            # The jobs are committed already (by the API): their place in line is a fact about memory, and
            # the client need not wait for this turn's commit to hear it. A start decided in this turn is
            # reported only once that start is committed.
            (turn.replies if started_now.intersection(job_ids) else turn.early).append((client, reply))
        for client, request_id, job_id in turn.explain_requests:
            turn.early.append((client, Reply(request_id, explanation=self.core.explain(job_id, now))))
        self._reply(turn.early)
        starts = await self._commit(effects, turn)
        self._deliver(effects, starts, turn)
        measure(self.telemetry, effects, self.terminal_counts)
        self.telemetry.record("taskq_scheduler_turn_duration", time.perf_counter() - turn_started)

    def _handle(
        self,
        client: Client,
        message: ToScheduler | Disconnected,
        dep_status: dict[str, str],
        redrives: dict[str, list[LiveJob]],
        turn: Turn,
        now: float,
    ) -> None:
        if client.role == "supervisor":
            self.executors.heard(client.node)
        match message:
            case Submitted(request_id=request_id, jobs=jobs):
                for job in jobs:
                    if job.status.terminal:  # committed upstream_failed by the API: it never comes here again
                        self.terminal_counts[job.status.value] += 1
                    if job.job_id not in self.core.jobs:
                        turn.events.append(
                            self.events.event(now, job.job_id, job.type, job.priority, job.status, "submitted")
                        )
                    self.core.admit(job, dep_status, now)
                turn.position_requests.append((client, request_id, [job.job_id for job in jobs]))
            case AttemptFinished():
                accepted = self.core.attempt_finished(
                    message.job_id, message.attempt, message.outcome, message.error, message.result, now
                )
                if not accepted:
                    log.warning(
                        "rejected a stale report for %s attempt %d",
                        message.job_id,
                        message.attempt,
                        extra={"job_id": message.job_id},
                    )
                turn.acks.append((client, message.seq))
            case AttemptStarted(job_id=job_id, attempt=attempt, pid=pid, at=at):
                if self.core.attempt_started(job_id, attempt):
                    line = LogRow(job_id, attempt, at, "info", "started", f"attempt {attempt} started on pid {pid}")
                    self._defer(line, pid=(job_id, attempt, pid))
            case HandlerLog():
                line = LogRow(message.job_id, message.attempt, message.at, message.level, "log", message.message)
                running = self.core.running.get(message.job_id)
                if running is not None and running.attempt == message.attempt:
                    self._defer(line)
                else:  # the last lines of an attempt that has ended: whoever sees it ended expects them
                    turn.logs.append(line)
            case AttemptBeat():
                running = self.core.running.get(message.job_id)
                if running is not None and running.attempt == message.attempt:
                    self.beats.add(message, running.type, running.level)
                    if self.deferred_since is None:
                        self.deferred_since = time.monotonic()
            case CancelRequest(request_id=request_id, job_id=job_id):
                verdict = self.core.cancel(job_id, now)
                turn.replies.append((client, Reply(request_id, cancel=verdict)))
            case PositionQuery(request_id=request_id, job_ids=job_ids):
                turn.position_requests.append((client, request_id, job_ids))
            case RedriveRequest(request_id=request_id, job_id=job_id):
                rows = redrives.get(job_id, [])
                items = [restored_from_row(row) for row in rows]
                done = self.core.redrive(job_id, items, dep_status, now)
                if done:  # they all leave their terminal status; where they end up is counted as it happens
                    for row in rows:
                        self.terminal_counts[row.status] -= 1
                turn.replies.append((client, Reply(request_id, redrive="redriven" if done else "not_failed")))
            case ExplainQuery(request_id=request_id, job_id=job_id):
                turn.explain_requests.append((client, request_id, job_id))
            case SupervisorHello(running=running):
                client.role = "supervisor"
                # A single node's supervisor is this node's, whatever it calls itself.
                name = client.node = message.node if self.clustered and message.node else self.node
                self.executors.attach(name, client)
                capacity = None
                if self.clustered:
                    capacity = Resources(
                        message.cpu_units or self.settings.cpu_units, message.memory_mb or self.settings.memory_mb
                    )
                attempts = [(ref.job_id, ref.attempt) for ref in running]
                self.core.node_ready(name, capacity, attempts, now, message.instance or None)
                # Worker pids again: one deferred for its commit is lost if this scheduler's predecessor
                # stopped first (writing a known pid again changes nothing).
                for ref in running:
                    if ref.pid and self.core.attempt_started(ref.job_id, ref.attempt):
                        self._defer_pid(ref.job_id, ref.attempt, ref.pid)
                log.info("supervisor %d connected with %d running attempts", message.pid, len(running))
            case SupervisorStopping():
                self.core.node_lost(client.node)
                log.info("supervisor %d of node %s is stopping; nothing more goes there", message.pid, client.node)
            case SupervisorStats():
                self.executors.stats[client.node] = message
                if client.node == self.node:
                    self.restarts["supervisor"] = message.restarts
                if self.clustered and self.term is not None:
                    # The executor's lease: it may run its attempts on until its own clock passes sent_at +
                    # lease without a newer answer. Not a decision, so it need not wait for a commit.
                    lease = self.settings.executor_lease_seconds
                    with contextlib.suppress(ChannelClosed):
                        client.channel.send(Ack([], term=self.term, echo=message.sent_at, lease=lease))
            case StatsQuery(request_id=request_id):
                counts = {**self.core.counts(), **{s.value: self.terminal_counts[s.value] for s in TERMINAL}}
                used, capacity = self.core.used, self.core.capacity
                in_use = {"cpu_units": used.cpu_units, "memory_mb": used.memory_mb}
                total = {"cpu_units": capacity.cpu_units, "memory_mb": capacity.memory_mb}
                nodes = self.executors.infos(self.node) if self.clustered else None
                reply = Reply(request_id, counts=counts, in_use=in_use, capacity=total, nodes=nodes, leader=self.node)
                turn.early.append((client, reply))
            case HealthQuery(request_id=request_id):
                dispatching = self.core.supervisor_ready and not self.core.draining
                turn.early.append((client, Reply(request_id, dispatching=dispatching, leader=self.node)))
            case MetricsQuery(request_id=request_id):
                turn.early.append((client, Reply(request_id, metrics=self.telemetry.render(), leader=self.node)))
            case SchedulesChanged(request_id=request_id):
                self.cron.changed(now)
                turn.early.append((client, Reply(request_id)))
            case TypeControl(request_id=request_id):
                self._control(message, now)
                turn.early.append((client, Reply(request_id)))
            case ApiHello():
                self.restarts["api"] = message.restarts
                client.role = "api"
                self.api_clients.add(client)
                self.sweep_needed = True
                with contextlib.suppress(ChannelClosed):  # its count of live jobs, before any submit
                    client.channel.send(Events([], live_jobs=len(self.core.jobs), largest_node=self.sent_largest))
            case Disconnected():
                self.api_clients.discard(client)
                if client.role == "supervisor" and self.executors.detach(client):
                    self.core.node_lost(client.node)
                    log.warning("the supervisor of node %s disconnected; nothing goes there meanwhile", client.node)

    def _defer(self, line: LogRow, pid: tuple[str, int, int] | None = None) -> None:
        if self.deferred_since is None:
            self.deferred_since = time.monotonic()
        self.deferred_logs.append(line)
        if pid is not None:
            self._defer_pid(*pid)

    def _defer_pid(self, job_id: str, attempt: int, pid: int) -> None:
        if self.deferred_since is None:
            self.deferred_since = time.monotonic()
        self.deferred_pids.append((job_id, attempt, pid))

    def _take_deferred(self, turn: Turn, commit_anyway: bool) -> None:
        """Hand the deferred writes to this turn if it commits anyway, or if they have waited long enough."""
        if self.deferred_since is None:
            return
        due = time.monotonic() - self.deferred_since >= DEFER_SECONDS or len(self.deferred_logs) >= DEFER_MAX_LINES
        if not (commit_anyway or due or self.stopping or self.drain_deadline is not None):
            return
        turn.logs[:0] = self.deferred_logs  # before the turn's own lines: they happened first
        turn.pids[:0] = self.deferred_pids
        turn.beats = self.beats.take()
        self.deferred_logs, self.deferred_pids, self.deferred_since = [], [], None

    def _reply(self, replies: list[tuple[Client, Reply]]) -> None:
        for client, reply in replies:
            with contextlib.suppress(ChannelClosed):
                client.channel.send(reply)

    def _positions(self, job_ids: list[str]) -> dict[str, int]:
        positions = {}
        for job_id in job_ids:
            position = self.core.position(job_id)
            if position is not None:
                positions[job_id] = position
        return positions

    def _statuses(self, job_ids: list[str]) -> dict[str, Status]:
        return {job_id: job.status for job_id in job_ids if (job := self.core.jobs.get(job_id)) is not None}

    async def _sweep(self, turn: Turn, now: float) -> None:
        """An API (re)connected: admit live jobs committed since this scheduler started (with a margin
        for transactions in flight at its rebuild) that it never heard of. A lost notice then delays a
        job by one reconnect, never forever."""
        # A change an API committed while this scheduler was loading may have lost its notice too.
        self.cron.changed(now)
        for control in await gateway.list_type_controls(self.pool):
            self._control(control, now)
        rows = await gateway.load_live_jobs(self.pool, since=self.started_at - SWEEP_MARGIN_SECONDS)
        missed = [
            row for row in rows if row.job_id not in self.core.jobs and row.job_id not in self.core.recently_finished
        ]
        if missed:
            live = {row.job_id for row in missed} | set(self.core.jobs)
            outside = sorted({dep for row in missed for dep in row.depends_on if dep not in live})
            dep_status = await gateway.job_statuses(self.pool, outside)
            restored = [restored_from_row(row) for row in missed]
            for item in restored:
                job = item.job
                turn.events.append(self.events.event(now, job.job_id, job.type, job.priority, job.status, "submitted"))
            self.core.restore_all(restored, dep_status, now)
            log.warning("admitted %d committed jobs whose notice was lost", len(missed))

    async def _load_redrives(
        self, batch: list[tuple[Client | None, ToScheduler | Disconnected | None]]
    ) -> dict[str, list[LiveJob]]:
        """Re-drives need the failed job and its upstream_failed descendants, which are not in memory."""
        wanted = {m.job_id for _, m in batch if isinstance(m, RedriveRequest) and m.job_id not in self.core.jobs}
        return {job_id: await gateway.load_redrive(self.pool, job_id) for job_id in sorted(wanted)}

    async def _statuses_of_unknown_deps(
        self,
        batch: list[tuple[Client | None, ToScheduler | Disconnected | None]],
        redrives: dict[str, list[LiveJob]],
    ) -> dict[str, str]:
        """Statuses of dependencies that are not held in memory (they are terminal, or on their way)."""
        deps = {dep for _, m in batch if isinstance(m, Submitted) for job in m.jobs for dep in job.depends_on}
        deps |= {dep for rows in redrives.values() for row in rows for dep in row.depends_on}
        unknown = {dep for dep in deps if dep not in self.core.jobs and dep not in self.core.recently_finished}
        return await gateway.job_statuses(self.pool, sorted(unknown)) if unknown else {}

    # --------------------------------------------------------------------------------------------- effects

    async def _commit(self, effects: Effects, turn: Turn) -> list[StartedJob]:
        """Every state change of the turn in one transaction. Raises (and so restarts the actor) on failure."""
        self._take_deferred(turn, commit_anyway=bool(effects or turn.logs or turn.pids or turn.events))
        turn.events.extend(self.events.of_turn(effects, turn.beats))
        if not (effects or turn.logs or turn.pids or turn.events or turn.beats):
            return []
        rows = turn_rows(effects, turn.logs, turn.pids, turn.beats)
        commit_started = time.perf_counter()
        # A batch's worth of events is written with COPY, in the same transaction as the rest.
        copied = turn.events if len(turn.events) >= EVENT_COPY_THRESHOLD else []
        try:
            async with self.pool.acquire() as conn, conn.transaction() if copied else contextlib.nullcontext():
                inline = [] if copied else turn.events
                starts = await gateway.apply_turn(
                    conn, rows.attempts, rows.opened, rows.jobs, rows.logs, inline, self.term
                )
                if copied:
                    await gateway.copy_events(conn, copied)
        except gateway.Fenced as exc:  # another scheduler leads now: this turn wrote nothing, and none may
            leadership.step_down(f"the turn was fenced off ({exc})")
        self.telemetry.record("taskq_scheduler_commit_duration", time.perf_counter() - commit_started)
        if self.events.last - self.pruned_up_to > 2 * EVENT_WINDOW and self.pruning is None:
            # Deleting a window's worth of rows takes a while: on the pool's other connection, off the turn.
            self.pruned_up_to = self.events.last - EVENT_WINDOW
            self.pruning = asyncio.create_task(self._prune(self.pruned_up_to))
        return starts

    async def _retain(self) -> None:
        """Retention: delete one batch of finished jobs past their time, between turns (the scheduler is
        the only writer of job state, so no turn can be re-driving a job while it goes). A full batch
        means more may be due, and the next pass follows the next turn."""
        now = time.time()
        succeeded, failed = self.settings.retention_succeeded, self.settings.retention_failed
        pruned = await gateway.prune_finished_jobs(
            self.pool,
            None if succeeded is None else datetime.fromtimestamp(now - succeeded, UTC),
            None if failed is None else datetime.fromtimestamp(now - failed, UTC),
            RETENTION_BATCH,
        )
        for row in pruned:
            self.terminal_counts[row.status] -= 1
            self.telemetry.add("taskq_jobs_pruned", status=row.status)
        self.core.forget_finished(row.job_id for row in pruned)
        if pruned:
            log.info("retention deleted %d finished jobs", len(pruned))
        assert self.retention_interval is not None
        self.next_retention = now if len(pruned) == RETENTION_BATCH else now + self.retention_interval

    async def _prune(self, up_to: int) -> None:
        try:
            await gateway.prune_events(self.pool, up_to)
        except Exception:  # the next prune retries; the window is only a replay buffer
            log.exception("pruning stream events up to %d failed", up_to)
        finally:
            self.pruning = None

    def _deliver(self, effects: Effects, starts: list[StartedJob], turn: Turn) -> None:
        term = self.term or 0
        started = {job.job_id: job for job in starts}
        messages: dict[str, list[RunJob | KillJob | Ack]] = {}
        for start in effects.starts:  # in dispatch order (UPDATE ... RETURNING has none)
            job = started[start.job_id]
            run = RunJob(
                start.job_id,
                start.attempt,
                job.type,
                _json_decode(job.payload),
                start.timeout_seconds,
                start.memory_mb,
                term,
            )
            messages.setdefault(start.node, []).append(run)
        for kill in effects.kills:
            messages.setdefault(kill.node, []).append(KillJob(kill.job_id, kill.attempt, kill.outcome, term))
        acks: dict[Client, list[int]] = {}
        for client, seq in turn.acks:
            acks.setdefault(client, []).append(seq)
        for node, batch in messages.items():
            supervisor = self.executors.links.get(node)
            if supervisor is None:
                continue  # the Hello of its next connection reconciles what it did not receive
            if supervisor in acks:
                batch.append(Ack(acks.pop(supervisor), term))
            self._send_all(supervisor, batch)
        for client, seqs in acks.items():  # a report acknowledged on the link it came by
            self._send_all(client, [Ack(seqs, term)])
        self._reply(turn.replies)
        largest_node = self.core.largest_node()
        largest = [largest_node.cpu_units, largest_node.memory_mb] if self.clustered else None
        if turn.events or largest != self.sent_largest:
            self.sent_largest = largest
            published = Events(turn.events, live_jobs=len(self.core.jobs), largest_node=largest)
            for api in list(self.api_clients):
                with contextlib.suppress(ChannelClosed):
                    api.channel.send(published)

    def _send_all(self, client: Client, messages: list[RunJob | KillJob | Ack]) -> None:
        try:
            client.channel.send_all(messages)  # one write: a system call per turn, not per job
        except ChannelClosed:
            log.warning("the link of node %s closed while dispatching", client.node)

    # --------------------------------------------------------------------------------------------- rebuild

    async def _rebuild(self) -> None:
        counts = await gateway.count_by_status(self.pool)
        # In place: the gauges hold this very Counter.
        self.terminal_counts.clear()
        self.terminal_counts.update({s.value: counts.get(s.value, 0) for s in TERMINAL})
        self.events.last = await gateway.last_event_seq(self.pool)
        self.pruned_up_to = (await gateway.first_event_seq(self.pool) or 1) - 1
        rows = await gateway.load_live_jobs(self.pool)
        live = {row.job_id for row in rows}
        outside = sorted({dep for row in rows for dep in row.depends_on if dep not in live})
        dep_status = await gateway.job_statuses(self.pool, outside)
        now = time.time()
        # A single node runs whatever is running: its attempts are this node's, whatever name they carry.
        node = None if self.clustered else self.node
        self.core.restore_all([restored_from_row(row, node) for row in rows], dep_status, now)
        for control in await gateway.list_type_controls(self.pool):
            self._control(control, now)
        effects = self.core.take_effects()
        await self._commit(effects, Turn())

    def _control(self, control: TypeControl | gateway.TypeControlRow, now: float) -> None:
        """A type's dispatch controls, as the API stored them (service/scheduler/type_controls.py)."""
        job_type = control.job_type if isinstance(control, TypeControl) else control.type
        self.core.controls.set(
            job_type,
            paused=control.paused,
            max_running=control.max_running,
            max_starts_per_second=control.max_starts_per_second,
            now=now,
        )


def _lost_ownership(_: object) -> None:
    log.error("lost the scheduler lock's connection; exiting so that a standby or restart takes over")
    os._exit(3)


async def _connect_with_backoff(url: str) -> asyncpg.Pool:
    delay = 0.1
    while True:
        try:
            return await gateway.connect_pool(url, min_size=1, max_size=2)
        except Exception as exc:  # the database may be starting or restarting: wait for it
            log.warning("database not reachable (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def main(settings: Settings, socket_path: str, database_url: str, parent_pid: int, restarts: int = 0) -> None:
    """Process entry point (spawned by the root supervisor)."""
    from service.logs import configure_logging

    die_with_parent(parent_pid)
    name_process("scheduler")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level, "scheduler")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    asyncio.run(SchedulerActor(settings, socket_path, database_url, restarts).run())
