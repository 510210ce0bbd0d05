"""Leadership of a cluster's scheduler: the lease in PostgreSQL, and the relay a standby runs meanwhile.

Every node runs a scheduler process. One of them leads: it holds the one row of `scheduler_lease` with
a term (epoch) that only grows. It renews the lease every second; another candidate takes it once it
has gone `TASKQ_LEADER_LEASE_SECONDS` unrenewed (one UPDATE, which raises the term). Every turn the
leader commits is fenced by its term (`taskq_fence` in `apply_turn`), so a leader that was paused past
its lease and wakes up cannot change a job: its write raises, and it exits.

A candidate that does not lead relays: its node's supervisor and API connect to its Unix socket as on a
single node, and it forwards each connection, byte for byte, to the leader's cluster port after the
HMAC handshake (`service/handshake.py`). When the lease moves, it closes the relayed connections, and
the supervisor and API reconnect (to the new leader, or to this very process once it leads). So neither
of them needs to know about leadership, nor to touch the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from typing import NoReturn

import asyncpg

from service import handshake
from service.store import gateway
from service.transport import MAX_FRAME

log = logging.getLogger("taskq.scheduler.leadership")

POLL_SECONDS = 0.5  # how often a candidate reads the lease (and so how late it may notice a change)
RENEW_SECONDS = 1.0  # at most: a short lease (tests use 1 s) is renewed three times per lease
RELAY_CHUNK = 1 << 16


class Relay:
    """Forwards local connections to the current leader; closes them all when the leader changes."""

    def __init__(self, secret: bytes, tls: ssl.SSLContext | None = None) -> None:
        self.secret = secret
        self.tls = tls
        self.target: str | None = None  # "host:port" of the leader's cluster port
        self.term = 0
        self._links: set[asyncio.StreamWriter] = set()

    def retarget(self, term: int, address: str | None) -> None:
        if (term, address) == (self.term, self.target):
            return
        if self.target is not None or self._links:
            log.info("the leader changed (term %d at %s); dropping %d relayed links", term, address, len(self._links))
        self.term, self.target = term, address
        self.close_all()

    def close_all(self) -> None:
        for writer in list(self._links):
            writer.close()
        self._links.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One local client (the node's supervisor or API): a link to the leader, then bytes both ways."""
        target = self.target
        if target is None:  # no leader right now: the client retries, and submissions still commit
            writer.close()
            return
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port), limit=MAX_FRAME, ssl=self.tls), handshake.TIMEOUT_SECONDS
            )
        except (OSError, TimeoutError, ValueError) as exc:  # ssl.SSLError is an OSError
            log.warning("cannot reach the leader at %s: %s", target, exc)
            writer.close()
            return
        try:
            await handshake.connect(up_reader, up_writer, self.secret)
        except handshake.HandshakeFailed as exc:
            log.error("the leader at %s failed the cluster handshake: %s", target, exc)
            up_writer.close()
            writer.close()
            return
        if self.target != target:  # the leader changed while this link was opening
            up_writer.close()
            writer.close()
            return
        self._links.update((writer, up_writer))
        try:
            await _pump_both(reader, writer, up_reader, up_writer)
        finally:
            self._links.discard(writer)
            self._links.discard(up_writer)
            writer.close()
            up_writer.close()


async def _pump_both(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    tasks = [asyncio.create_task(_pump(a_reader, b_writer)), asyncio.create_task(_pump(b_reader, a_writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(RELAY_CHUNK):
            writer.write(data)
            await writer.drain()


class Lease:
    """This candidate's side of the lease: campaign until it leads, then keep it (or exit)."""

    def __init__(self, pool: asyncpg.Pool, node: str, address: str, seconds: float, relay: Relay) -> None:
        self.pool = pool
        self.node = node
        self.address = address
        self.seconds = seconds
        self.relay = relay
        self.term: int | None = None
        self.renewed_at = 0.0  # monotonic time of the last renewal (or of taking the lease)

    async def campaign(self) -> int:
        """Returns once this node holds the lease, with its term. Meanwhile the relay follows the leader."""
        delay = POLL_SECONDS
        while True:
            try:
                await gateway.node_heartbeat(self.pool, self.node, True)
                term = await gateway.take_lease(self.pool, self.node, self.address, self.seconds)
                if term is not None:
                    self.term, self.renewed_at = term, time.monotonic()
                    self.relay.retarget(term, None)  # local clients reconnect, to this process
                    log.info("took the scheduler lease: term %d, cluster address %s", term, self.address)
                    return term
                lease = await gateway.read_lease(self.pool)
                self.relay.retarget(lease.term, lease.address if lease.valid else None)
                delay = POLL_SECONDS
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The database is out of this node's reach, not necessarily the leader's: the links stay
                # as they are (this node's executor goes on running what the leader gives it, and its API
                # answers 503 to what needs the database). A new leader is followed once the lease reads.
                log.warning("cannot read the scheduler lease (%s); retrying", exc)
                delay = min(delay * 2, 2.0)
            await asyncio.sleep(delay)

    async def keep(self) -> None:
        """Renew every second while leading. A renewal refused (another node took the lease) or missing for
        a whole lease (the database out of reach) ends this process at once: its executors must stop
        hearing from it, and its next turn could not commit anyway."""
        assert self.term is not None
        interval = min(RENEW_SECONDS, self.seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                renewed = await asyncio.wait_for(
                    gateway.renew_lease(self.pool, self.term, self.node, self.seconds), self.seconds / 2
                )
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if time.monotonic() - self.renewed_at >= self.seconds:
                    step_down(f"the lease could not be renewed for {self.seconds:.0f}s ({exc})")
                log.warning("renewing the scheduler lease failed (%s); retrying", exc)
                continue
            if not renewed:
                step_down("another scheduler took the lease")
            self.renewed_at = time.monotonic()
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await gateway.node_heartbeat(self.pool, self.node, True)

    async def release(self) -> None:
        """A leader that stops hands the lease over at once instead of letting it expire."""
        if self.term is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(gateway.release_lease(self.pool, self.term, self.node), 2.0)
            log.info("released the scheduler lease (term %d)", self.term)


def step_down(why: str) -> NoReturn:
    log.error("stepping down as the scheduler leader: %s; exiting so that this node restarts as a candidate", why)
    os._exit(3)
