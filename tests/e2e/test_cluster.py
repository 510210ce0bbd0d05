"""A cluster: three `taskq serve` nodes on one machine and one PostgreSQL database, sharing a secret.

One node's scheduler leads (the lease); every node's supervisor runs what the leader places on it. The
tests kill, stop and drain nodes for real (SIGKILL of a whole process tree, SIGSTOP, SIGTERM) and check
from the database's record that every job ends once and that no two attempts of a job ever overlap.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PgServer, Service, free_port, wait_until

SECRET = "s" * 40
LEASE = "1"  # seconds: failover in about two, an executor's lease of 2 × 1 + 2 = 4 s
_release_ids = itertools.count()


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Cluster:
    def __init__(self, factory: Callable[..., Service], url: str, release_dir: Path) -> None:
        self.factory = factory
        self.url = url
        self.release_dir = release_dir
        self.nodes: dict[str, Service] = {}

    def start(self, name: str, cpu: int = 2, **env: str) -> Service:
        settings = {
            "TASKQ_CLUSTER_SECRET": SECRET,
            "TASKQ_NODE_NAME": name,
            "TASKQ_CPU_UNITS": str(cpu),
            "TASKQ_MEMORY_MB": "4096",
            "TASKQ_LEADER_LEASE_SECONDS": LEASE,
            "TASKQ_KILL_GRACE_SECONDS": "1",
            "TASKQ_SHUTDOWN_GRACE_SECONDS": "30",
        }
        node = self.factory(self.url, **{**settings, **env}).start()
        self.nodes[name] = node
        return node

    def any(self, *, but: str | None = None) -> Service:
        return next(s for n, s in self.nodes.items() if n != but and s.process is not None and s.process.poll() is None)

    def stats(self, via: Service) -> dict[str, Any]:
        body: dict[str, Any] = via.http.get("/stats").json()
        return body

    def wait_nodes(self, via: Service, names: set[str]) -> dict[str, Any]:
        def all_connected() -> dict[str, Any] | None:
            stats = self.stats(via)
            connected = {n["name"] for n in stats.get("nodes") or [] if n["connected"] and not n["draining"]}
            return stats if names <= connected else None

        return wait_until(all_connected, timeout=30, what=f"nodes {sorted(names)} connected to the leader")

    def blocker(self) -> tuple[dict[str, Any], Path]:
        release = self.release_dir / f"release-{next(_release_ids)}"
        return {"release_file": str(release), "duration_seconds": 0}, release


@pytest.fixture
def cluster(pg: PgServer, service_factory: Callable[..., Service], tmp_path: Path) -> Cluster:
    release_dir = tmp_path / "release"
    release_dir.mkdir()
    return Cluster(service_factory, pg.fresh_database(), release_dir)


def attempts_by_job(node: Service, job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    return {job_id: node.job(job_id)["attempts"] for job_id in job_ids}


def assert_no_overlap(attempts: dict[str, list[dict[str, Any]]]) -> None:
    """No two attempts of one job ran at the same time: each started after the previous one ended."""
    for job_id, runs in attempts.items():
        for earlier, later in itertools.pairwise(runs):
            assert earlier["finished_at"] is not None, (job_id, runs)
            assert _ts(later["started_at"]) >= _ts(earlier["finished_at"]), (job_id, runs)


def test_jobs_spread_over_the_nodes_and_never_exceed_one_node(cluster: Cluster) -> None:
    first = cluster.start("n1")
    cluster.start("n2")
    cluster.start("n3")
    cluster.wait_nodes(first, {"n1", "n2", "n3"})
    jobs, releases = [], []
    for i in range(6):  # 2 CPU units each on nodes of 2: one at a time per node, three at once
        payload, release = cluster.blocker()
        releases.append(release)
        job = first.submit(
            type="quick_task", payload=payload, job_id=f"wide-{i}", resource_requirements={"cpu_units": 2}
        )
        jobs.append(job["job_id"])

    def three_running() -> list[dict[str, Any]] | None:
        running = [j for j in (first.job(job_id) for job_id in jobs) if j["status"] == "running"]
        return running if len(running) == 3 else None

    running = wait_until(three_running, what="three jobs running at once")
    assert {job["attempts"][-1]["node"] for job in running} == {"n1", "n2", "n3"}
    stats = cluster.stats(first)
    assert stats["leader"] == "n1"
    assert stats["capacity"]["cpu_units"] == 6
    assert sorted((n["name"], n["in_use"]["cpu_units"], n["running"]) for n in stats["nodes"]) == [
        ("n1", 2, 1),
        ("n2", 2, 1),
        ("n3", 2, 1),
    ]
    for release in releases:
        release.touch()
    for job_id in jobs:
        first.wait_status(job_id, "succeeded", timeout=30)
    # From the record: on each node, at no moment did two attempts (2 units each) run together.
    attempts = [a for runs in attempts_by_job(first, jobs).values() for a in runs]
    for node in ("n1", "n2", "n3"):
        spans = sorted((_ts(a["started_at"]), _ts(a["finished_at"])) for a in attempts if a["node"] == node)
        assert spans, f"no job ran on {node}"
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"two 2-unit attempts overlapped on {node}: {spans}"


def test_a_job_submitted_through_a_node_that_does_not_lead_runs_at_once(cluster: Cluster) -> None:
    first = cluster.start("n1")
    second = cluster.start("n2")
    cluster.wait_nodes(second, {"n1", "n2"})
    job = second.submit(type="quick_task", payload={"duration_seconds": 0})
    done = second.wait_status(job["job_id"], "succeeded")
    assert done["attempts"][0]["node"] in {"n1", "n2"}
    # The leader heard of it over the link (no sweep, no reconnect): its stream event came from there.
    assert cluster.stats(second)["leader"] == "n1"
    assert first.job(job["job_id"])["status"] == "succeeded"


def test_a_job_larger_than_this_node_but_not_than_another_is_accepted_and_runs_there(cluster: Cluster) -> None:
    small = cluster.start("small", cpu=1)
    cluster.start("big", cpu=4)
    cluster.wait_nodes(small, {"small", "big"})
    job = small.submit(type="quick_task", payload={"duration_seconds": 0}, resource_requirements={"cpu_units": 3})
    assert small.wait_status(job["job_id"], "succeeded")["attempts"][0]["node"] == "big"
    too_big = small.http.post(
        "/jobs", json={"type": "quick_task", "payload": {}, "resource_requirements": {"cpu_units": 5}}
    )
    assert too_big.status_code == 422, too_big.text
    assert "cpu_units" in too_big.text


def test_a_second_node_without_the_cluster_secret_is_refused(
    pg: PgServer, service_factory: Callable[..., Service]
) -> None:
    url = pg.fresh_database()
    service_factory(url, TASKQ_NODE_NAME="alone").start()
    intruder = service_factory(url, TASKQ_NODE_NAME="intruder")
    with pytest.raises(pytest.fail.Exception, match="exited with 2"):
        intruder.start()
    assert "TASKQ_CLUSTER_SECRET" in intruder.logs()


def test_killing_the_leader_node_moves_the_lease_and_retries_only_its_jobs(cluster: Cluster) -> None:
    leader = cluster.start("n1")
    cluster.start("n2")
    cluster.start("n3")
    survivor = cluster.nodes["n2"]
    cluster.wait_nodes(leader, {"n1", "n2", "n3"})
    jobs, releases = [], []
    for i in range(3):
        payload, release = cluster.blocker()
        releases.append(release)
        jobs.append(
            leader.submit(type="quick_task", payload=payload, job_id=f"k-{i}", resource_requirements={"cpu_units": 2})[
                "job_id"
            ]
        )
    wait_until(lambda: all(leader.job(j)["status"] == "running" for j in jobs), what="a job running on every node")
    on_node = {leader.job(j)["attempts"][-1]["node"]: j for j in jobs}
    assert set(on_node) == {"n1", "n2", "n3"}

    leader.kill()  # SIGKILL to the whole process group: scheduler, supervisor, workers, API
    # With no leader yet, a submission is still committed and answered: it waits for the next leader.
    orphan = survivor.submit(type="quick_task", payload={"duration_seconds": 0}, job_id="while-leaderless")
    assert orphan["status"] == "pending"

    stats = wait_until(
        lambda: (s := cluster.stats(survivor)).get("leader") not in (None, "n1") and s,
        timeout=20,
        what="a new leader",
    )
    assert stats["leader"] in {"n2", "n3"}
    # The dead node's job is closed as crashed once its executor lease has run out (it may still have been
    # running, as far as the new leader knows), and waits for room. The survivors' jobs end; the lost one
    # runs again where they ran, blocked on its own release file (so it is seen running as attempt 2).
    lost = on_node["n1"]
    wait_until(
        lambda: len(survivor.job(lost)["attempts"]) == 1 and survivor.job(lost)["attempts"][0]["outcome"] == "crashed",
        timeout=30,
        what=f"{lost} closed as crashed",
    )
    for job_id, release in zip(jobs, releases, strict=True):
        if job_id != lost:
            release.touch()
    wait_until(
        lambda: (j := survivor.job(lost))["status"] == "running" and j["attempt_count"] == 2,
        timeout=30,
        what=f"{lost} retried on a surviving node",
    )
    releases[jobs.index(lost)].touch()
    for job_id in jobs:
        survivor.wait_status(job_id, "succeeded", timeout=30)
    survivor.wait_status("while-leaderless", "succeeded", timeout=30)
    attempts = attempts_by_job(survivor, jobs)
    # The survivors' jobs ran once, untouched by the failover; the lost one crashed on n1, ran again elsewhere.
    for node in ("n2", "n3"):
        assert [a["outcome"] for a in attempts[on_node[node]]] == ["succeeded"], attempts[on_node[node]]
    assert [a["outcome"] for a in attempts[lost]] == ["crashed", "succeeded"]
    assert attempts[lost][0]["node"] == "n1"
    assert attempts[lost][1]["node"] in {"n2", "n3"}
    assert_no_overlap(attempts)


def test_a_leader_stopped_past_its_lease_is_fenced_and_steps_down(cluster: Cluster) -> None:
    leader = cluster.start("n1")
    follower = cluster.start("n2")
    cluster.wait_nodes(leader, {"n1", "n2"})
    scheduler = psutil.Process(leader.actor_pids()["scheduler"])
    scheduler.suspend()  # SIGSTOP: the lease runs out while it cannot renew it
    try:
        wait_until(lambda: cluster.stats(follower).get("leader") == "n2", timeout=20, what="n2 to take the lease")
        job = follower.submit(type="quick_task", payload={"duration_seconds": 0})
        follower.wait_status(job["job_id"], "succeeded")
    finally:
        scheduler.resume()  # SIGCONT: its next write is refused by the fence, and it steps down
    wait_until(lambda: not scheduler.is_running() or scheduler.status() == psutil.STATUS_ZOMBIE, what="old leader exit")
    wait_until(lambda: "stepping down" in leader.logs() or "fenced off" in leader.logs(), what="the step-down logged")
    # n1 comes back as a candidate; the cluster keeps working with n2 leading.
    cluster.wait_nodes(follower, {"n1", "n2"})
    job = leader.submit(type="quick_task", payload={"duration_seconds": 0})
    leader.wait_status(job["job_id"], "succeeded")
    assert cluster.stats(leader)["leader"] == "n2"


def test_draining_one_node_lets_its_job_finish_and_leaves_the_others_running(cluster: Cluster) -> None:
    leader = cluster.start("n1")
    leaving = cluster.start("n2")
    cluster.wait_nodes(leader, {"n1", "n2"})
    jobs, releases = [], []
    for i in range(2):
        payload, release = cluster.blocker()
        releases.append(release)
        jobs.append(
            leader.submit(type="quick_task", payload=payload, job_id=f"d-{i}", resource_requirements={"cpu_units": 2})[
                "job_id"
            ]
        )
    wait_until(lambda: all(leader.job(j)["status"] == "running" for j in jobs), what="one job on each node")
    on_node = {leader.job(j)["attempts"][-1]["node"]: j for j in jobs}
    assert leaving.process is not None
    os.kill(leaving.process.pid, signal.SIGTERM)
    # n2 takes nothing new: a job submitted now waits for n1, which is busy.
    extra = leader.submit(type="quick_task", payload={"duration_seconds": 0}, resource_requirements={"cpu_units": 2})
    releases[jobs.index(on_node["n2"])].touch()  # n2's job finishes within the grace
    assert leaving.process.wait(30) == 0
    assert leader.wait_status(on_node["n2"], "succeeded")["attempts"][0]["outcome"] == "succeeded"
    assert leader.job(on_node["n1"])["status"] == "running"  # untouched
    releases[jobs.index(on_node["n1"])].touch()
    assert leader.wait_status(extra["job_id"], "succeeded")["attempts"][0]["node"] == "n1"


def test_an_executor_stopped_past_its_lease_has_its_attempt_killed_then_rerun_elsewhere(cluster: Cluster) -> None:
    leader = cluster.start("n1")
    frozen_node = cluster.start("n2")
    cluster.wait_nodes(leader, {"n1", "n2"})
    payloads = [cluster.blocker() for _ in range(2)]
    jobs = [
        leader.submit(type="quick_task", payload=payload, job_id=f"f-{i}", resource_requirements={"cpu_units": 2})[
            "job_id"
        ]
        for i, (payload, _) in enumerate(payloads)
    ]
    wait_until(lambda: all(leader.job(j)["status"] == "running" for j in jobs), what="one job on each node")
    on_node = {leader.job(j)["attempts"][-1]["node"]: j for j in jobs}
    victim = on_node["n2"]
    worker = psutil.Process(wait_until(lambda: leader.job(victim)["attempts"][0]["worker_pid"], what="its pid"))
    supervisor = psutil.Process(frozen_node.actor_pids()["supervisor"])
    supervisor.suspend()  # SIGSTOP: no word from n2 while its worker goes on, until the lease runs out
    try:
        # The zygote kills the worker once the executor's lease has lapsed, with the supervisor still stopped.
        wait_until(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, timeout=20, what="kill")
        # The leader closes the silent node's attempt only after the lease plus the kill grace; n1 is busy,
        # so the retry waits for it.
        wait_until(lambda: leader.job(victim)["attempts"][0]["outcome"] == "crashed", timeout=20, what="attempt closed")
        payloads[jobs.index(on_node["n1"])][1].touch()
        wait_until(lambda: leader.job(victim)["attempt_count"] == 2, timeout=20, what=f"{victim} re-run")
    finally:
        supervisor.resume()
    payloads[jobs.index(victim)][1].touch()
    for job_id in jobs:
        leader.wait_status(job_id, "succeeded", timeout=30)
    attempts = attempts_by_job(leader, jobs)
    assert [a["node"] for a in attempts[victim]] == ["n2", "n1"]
    assert [a["outcome"] for a in attempts[victim]] == ["crashed", "succeeded"]
    assert_no_overlap(attempts)
    # n2 comes back (its Hello reconciles the attempt it lost) and takes work again.
    cluster.wait_nodes(leader, {"n1", "n2"})


def test_a_leader_stopped_by_sigterm_hands_the_lease_over_instead_of_letting_it_expire(cluster: Cluster) -> None:
    # A lease far longer than the test waits: only a hand-over lets the other node lead in time.
    leader = cluster.start("n1", TASKQ_LEADER_LEASE_SECONDS="600")
    other = cluster.start("n2", TASKQ_LEADER_LEASE_SECONDS="600")
    cluster.wait_nodes(leader, {"n1", "n2"})
    assert leader.stop() == 0
    assert "released the scheduler lease" in leader.logs()
    wait_until(lambda: cluster.stats(other).get("leader") == "n2", timeout=20, what="n2 to take the lease")
    job = other.submit(type="quick_task", payload={"duration_seconds": 0})
    assert other.wait_status(job["job_id"], "succeeded")["attempts"][0]["node"] == "n2"


def test_every_node_labels_its_metrics_and_only_the_leaders_node_serves_the_schedulers(cluster: Cluster) -> None:
    leader = cluster.start("n1")
    other = cluster.start("n2")
    cluster.wait_nodes(leader, {"n1", "n2"})
    job = other.submit(type="quick_task", payload={"duration_seconds": 0})
    other.wait_status(job["job_id"], "succeeded")

    def samples(node: Service) -> list[Any]:
        return [s for f in text_string_to_metric_families(node.http.get("/metrics").text) for s in f.samples]

    def scheduler_series(found: list[Any]) -> list[Any]:
        return [s for s in found if s.name.startswith("taskq_queue_depth")]

    from_leader = wait_until(
        lambda: (found := samples(leader)) and any(s.name == "taskq_spare_workers" for s in found) and found,
        what="the leader's scheduler series",
    )
    from_other = samples(other)
    assert scheduler_series(from_leader)
    assert all(s.labels["node"] == "n1" for s in scheduler_series(from_leader))
    assert {s.labels["node"] for s in from_leader if s.name == "taskq_spare_workers"} == {"n1", "n2"}
    assert not scheduler_series(from_other), "a node that does not lead must not repeat the leader's series"
    http = [s for s in from_other if s.name == "taskq_http_requests_total"]
    assert http
    assert {s.labels["node"] for s in http} == {"n2"}


class DatabaseLink:
    """A TCP proxy in front of the test's PostgreSQL that the test can cut and restore: one node's own
    route to the database, so that only that node loses it. Threads and plain sockets, all owned here."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        query = dict(parse_qsl(parts.query))
        sockets = sorted(Path(query["host"]).glob(".s.PGSQL.*[0-9]")) if "host" in query else []
        self.socket_path = str(sockets[0]) if sockets else None
        self.tcp = None if self.socket_path else (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.port = free_port()
        self.url = urlunsplit(
            ("postgresql", f"{parts.username or 'postgres'}@127.0.0.1:{self.port}", parts.path, "", "")
        )
        self.cut = threading.Event()
        self.open: set[socket.socket] = set()
        self.pumps: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _upstream(self) -> socket.socket:
        if self.socket_path is not None:
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.socket_path)
            return up
        assert self.tcp is not None
        return socket.create_connection(self.tcp)

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                down, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut.is_set():
                down.close()
                continue
            up = self._upstream()
            with self.lock:
                self.open.update((down, up))
            for source, sink in ((down, up), (up, down)):
                pump = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                self.pumps.append(pump)
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """One direction of one connection. Each socket is the source of exactly one pump, which closes it
        when that direction ends (after shutting both down, so that the other direction ends too)."""
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self.lock:
                self.open.discard(source)
            source.close()

    def sever(self) -> None:
        """Every connection through the link ends now, and new ones are refused until `restore`."""
        self.cut.set()
        with self.lock:
            for s in self.open:  # their pumps end, and close them
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self.stopped.set()
        self.sever()
        self.listener.close()
        self.thread.join(5)
        for pump in self.pumps:
            pump.join(5)


def test_a_node_cut_off_from_the_database_stops_taking_work_and_the_others_go_on(cluster: Cluster) -> None:
    link = DatabaseLink(cluster.url)
    try:
        leader = cluster.start("n1", cpu=2)
        # n2 reaches PostgreSQL only through the link; its scheduler candidate, API and migrations too.
        cut_off = cluster.factory(
            link.url,
            TASKQ_CLUSTER_SECRET=SECRET,
            TASKQ_NODE_NAME="n2",
            TASKQ_CPU_UNITS="2",
            TASKQ_LEADER_LEASE_SECONDS=LEASE,
            TASKQ_KILL_GRACE_SECONDS="1",
        ).start()
        cluster.nodes["n2"] = cut_off
        cluster.wait_nodes(leader, {"n1", "n2"})
        payload, release = cluster.blocker()
        held = leader.submit(type="quick_task", payload=payload, resource_requirements={"cpu_units": 2})["job_id"]
        blocker_payload, blocker_release = cluster.blocker()
        other = leader.submit(type="quick_task", payload=blocker_payload, resource_requirements={"cpu_units": 2})[
            "job_id"
        ]
        wait_until(lambda: all(leader.job(j)["status"] == "running" for j in (held, other)), what="both running")
        on_n2 = held if leader.job(held)["attempts"][0]["node"] == "n2" else other

        link.sever()
        # n2 cannot commit: its API refuses submissions (503) and says it is not ready; reads of the
        # database fail the same way. Nothing is accepted that could be lost.
        wait_until(lambda: cut_off.http.get("/health/ready").status_code == 503, what="n2 unready")
        refused = cut_off.http.post("/jobs", json={"type": "quick_task", "payload": {}})
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        # The rest go on: n1 takes submissions, and n2's executor, linked to the leader, finishes its job.
        (release if on_n2 == held else blocker_release).touch()
        leader.wait_status(on_n2, "succeeded", timeout=30)
        assert [a["node"] for a in leader.job(on_n2)["attempts"]] == ["n2"]
        (blocker_release if on_n2 == held else release).touch()
        fresh = leader.submit(type="quick_task", payload={"duration_seconds": 0})
        leader.wait_status(fresh["job_id"], "succeeded")

        link.restore()
        wait_until(lambda: cut_off.http.get("/health/ready").status_code == 200, timeout=30, what="n2 ready again")
        job = cut_off.submit(type="quick_task", payload={"duration_seconds": 0})
        cut_off.wait_status(job["job_id"], "succeeded")
    finally:
        link.close()


def test_links_run_over_mutual_tls_when_certificates_are_configured(cluster: Cluster, tmp_path: Path) -> None:
    import asyncio

    import trustme

    ca = trustme.CA()
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "node.pem", "key": tmp_path / "node-key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.private_key_pem.write_to_path(str(files["key"]))
    issued.cert_chain_pems[0].write_to_path(str(files["cert"]))
    tls = {
        "TASKQ_CLUSTER_TLS_CERT": str(files["cert"]),
        "TASKQ_CLUSTER_TLS_KEY": str(files["key"]),
        "TASKQ_CLUSTER_TLS_CA": str(files["ca"]),
    }
    leader = cluster.start("n1", **tls)
    other = cluster.start("n2", **tls)
    cluster.wait_nodes(other, {"n1", "n2"})  # n2's supervisor and API reach n1 through TLS
    job = other.submit(type="quick_task", payload={"duration_seconds": 0}, resource_requirements={"cpu_units": 2})
    other.wait_status(job["job_id"], "succeeded")

    # A peer without a certificate gets no further than the TLS handshake: it never sees the challenge.
    line = next(x for x in leader.logs().splitlines() if "took the scheduler lease" in x)
    port = int(line.split("cluster address ")[1].split(":")[1].split('"')[0])

    async def plain_peer() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00" * 64)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(64), 10)
        finally:
            writer.close()

    assert not asyncio.run(plain_peer()).startswith(b"TQL1")
