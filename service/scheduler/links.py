"""The scheduler's peers: one `Client` per connection (an API or a supervisor, local or relayed from
another node), and the executor nodes as the leader tracks them."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import msgspec

from service.protocol import NodeInfo, SupervisorStats, ToScheduler
from service.scheduler.core import SchedulerCore
from service.transport import AsyncChannel

log = logging.getLogger("taskq.scheduler")


class Disconnected(msgspec.Struct):
    """Internal marker: a client's connection ended."""


@dataclass(eq=False)
class Client:
    channel: AsyncChannel[ToScheduler]
    role: str = "unknown"
    node: str = ""  # a supervisor's node, from its Hello


@dataclass
class Executors:
    """Every executor node's supervisor link, when it was last heard from, and its figures.

    In a cluster, a node silent for longer than `silence_limit` (its executor's lease, plus the kill
    grace, plus a second) has killed its attempts itself, or is gone with them: `expire` closes them as
    crashed so that they are retried on the others (ARCHITECTURE.md, "Cluster"). A single node's
    supervisor is a child of the same root, and is never expired."""

    core: SchedulerCore
    clustered: bool
    silence_limit: float
    links: dict[str, Client] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)  # monotonic time of each node's last message
    stats: dict[str, SupervisorStats] = field(default_factory=dict)

    def heard(self, node: str) -> None:
        self.seen[node] = time.monotonic()

    def attach(self, node: str, client: Client) -> None:
        previous = self.links.get(node)
        if previous is not None and previous is not client:
            previous.channel.close()  # a reconnect whose old link is not closed yet: the Hello wins
        self.links[node] = client
        self.heard(node)

    def detach(self, client: Client) -> bool:
        """A supervisor's link ended; whether it was its node's current one."""
        if self.links.get(client.node) is client:
            del self.links[client.node]
            return True
        return False

    def expire(self, now: float) -> None:
        if not self.clustered:
            return
        mono = time.monotonic()
        # Every node holding attempts has a ledger (a rebuild makes one for each node it finds running
        # attempts on), so the ledgers alone say which nodes to watch: no walk over the running jobs.
        for name, node in list(self.core.nodes.items()):
            seen = self.seen.setdefault(name, mono)  # first met in a rebuild: counted from now
            if mono - seen < self.silence_limit:
                continue
            client = self.links.pop(name, None)
            if client is not None:  # a frozen peer: its link is open but it says nothing; it says Hello again
                client.channel.close()
            lost = node.running
            self.core.node_expired(name, now)
            del self.seen[name]
            log.warning("node %s silent for %.1fs: %d attempts closed as crashed", name, mono - seen, lost)

    def next_expiry(self, now: float) -> float | None:
        """Epoch seconds of the next moment a node may expire."""
        if not self.clustered or not self.seen:
            return None
        return now + min(self.seen.values()) + self.silence_limit - time.monotonic()

    def infos(self, leader: str) -> list[NodeInfo]:
        now, mono = time.time(), time.monotonic()
        infos = []
        for node in self.core.nodes.values():
            seen = self.seen.get(node.name, mono)
            connected = node.name in self.links
            infos.append(
                NodeInfo(
                    name=node.name,
                    leader=node.name == leader,
                    connected=connected,
                    draining=node.draining or (connected and not node.ready),
                    capacity={"cpu_units": node.capacity.cpu_units, "memory_mb": node.capacity.memory_mb},
                    in_use={"cpu_units": node.used.cpu_units, "memory_mb": node.used.memory_mb},
                    running=node.running,
                    last_seen=now - (mono - seen),
                )
            )
        return infos
