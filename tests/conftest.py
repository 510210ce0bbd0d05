"""Shared fixtures: a real PostgreSQL server for the whole session, a fresh database per test cloned
from a migrated template, and the real `taskq serve` process tree driven over HTTP.

The server is the embedded one (pgserver) unless TASKQ_DATABASE_URL names another; then that server
hosts the per-test databases.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "taskq_test_template"
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- waiting


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
    what: str = "",
    detail: Callable[[], object] | None = None,
) -> T:
    """Polls `check` until it returns something truthy, or fails with the last value seen (and `detail()`,
    when given: what the check saw beyond a yes or no)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            more = f"; {detail()}" if detail is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what or check}; last seen: {last!r}{more}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------- database


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


class PgServer:
    def __init__(self, admin_url: str, embedded: Any = None) -> None:
        self.admin_url = admin_url
        self.embedded = embedded  # the EmbeddedPostgres, when the tests started one

    def restartable(self) -> bool:
        return self.embedded is not None

    def stop_server(self) -> None:
        """Stops the server and makes sure it is down: a stop that timed out would leave a server that
        goes away later, and nobody would start it again."""
        self.embedded.stop()
        pid_file = self.embedded.pgdata / "postmaster.pid"
        if pid_file.exists():
            raise RuntimeError(f"PostgreSQL did not stop; its log ends:\n{self.log_tail()}")

    def start_server(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.embedded.start(database="postgres")
        try:
            self.psql("SELECT 1")
        except Exception as exc:
            raise RuntimeError(f"PostgreSQL did not come back ({exc}); its log ends:\n{self.log_tail()}") from exc

    def log_tail(self, chars: int = 4000) -> str:
        log = self.embedded.pgdata / "log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log file)"

    def psql(self, sql: str, database: str | None = None) -> str:
        import asyncio

        import asyncpg

        async def run() -> str:
            conn = await asyncpg.connect(with_database(self.admin_url, database) if database else self.admin_url)
            try:
                return str(await conn.execute(sql))
            finally:
                await conn.close()

        return asyncio.run(run())

    def fresh_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        return with_database(self.admin_url, name)


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    from service.store.migrations import migrate

    external = os.environ.get("TASKQ_DATABASE_URL")
    embedded = None
    if external:
        admin = external
    else:
        from service.embedded_pg import EmbeddedPostgres

        # Its own directory, not pytest's: pytest prunes old basetemps, which must never pull the data
        # directory from under a server another pytest run still uses.
        data_dir = tempfile.mkdtemp(prefix="taskq-test-pg-")
        embedded = EmbeddedPostgres(data_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            admin = embedded.start(database="postgres")
    server = PgServer(admin, embedded)
    server.psql(f"DROP DATABASE IF EXISTS {TEMPLATE}")
    migrate(with_database(admin, TEMPLATE))
    try:
        yield server
    finally:
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(data_dir, ignore_errors=True)


def _describe(process: psutil.Process) -> str:
    """A leftover process, with its parent: enough to tell an orphan from a straggler."""
    try:
        parent = process.parent()
        owner = f"{parent.pid} {' '.join(parent.cmdline())[:60]!r}" if parent is not None else "none"
        return f"{process.pid} {' '.join(process.cmdline())[:60]!r} started {process.create_time():.3f}, parent {owner}"
    except psutil.Error as exc:
        return f"{process.pid} ({exc})"


@pytest.fixture
def database_url(pg: PgServer) -> str:
    return pg.fresh_database()


# ----------------------------------------------------------------------------------------------- service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """A running `taskq serve` process tree and an HTTP client for it."""

    def __init__(self, database_url: str, log_path: Path, env: dict[str, str], port: int | None = None) -> None:
        self.database_url = database_url
        self.port = port or free_port()  # a given port: a restarted service where clients expect the old one
        self.log_path = log_path
        # Nothing of the developer's own taskq configuration leaks in (a TASKQ_CPU_UNITS or TASKQ_AUTH in the
        # shell would change what every test means); each test states the settings it depends on.
        base = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_") or k == "TASKQ_MIGRATIONS_DIR"}
        self.env = {
            **base,
            **({"TASKQ_DATABASE_URL": database_url} if database_url else {}),
            "TASKQ_HOST": "127.0.0.1",
            "TASKQ_PORT": str(self.port),
            "TASKQ_LOG_LEVEL": "INFO",
            **env,
        }
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.base_url, timeout=10.0)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Service:
        self.spawn()

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"taskq serve exited with {self.process.returncode}:\n{self.logs()}")
            try:
                return self.http.get("/health/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=timeout, interval=0.05, what="service readiness")
        return self

    def spawn(self) -> None:
        """Starts `taskq serve` without waiting for it to be ready."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def actor_pids(self) -> dict[str, int]:
        """The root's direct children by role, read from their process titles."""
        found = {}
        for child in psutil.Process(self.pid).children():
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(child.cmdline())
                for role in ("scheduler", "supervisor", "api"):
                    if cmd.startswith(f"taskq: {role}"):
                        found[role] = child.pid
        return found

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"taskq serve did not stop within {timeout}s:\n{self.logs()}")

    def kill(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    # --- API helpers -------------------------------------------------------------------------------

    def submit(self, **job: Any) -> dict[str, Any]:
        response = self.http.post("/jobs", json=job)
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_status(self, job_id: str, *statuses: str, timeout: float = 20.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in statuses else None

        return wait_until(check, timeout=timeout, what=f"{job_id} to become {statuses}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failed test's report carries the log of every service it started: the service's own account of
    what it was doing is what explains a failure seen only once, on a loaded CI machine."""
    report = yield
    if report.when == "call" and report.failed:
        for service in getattr(item, "taskq_services", []):
            report.sections.append((f"taskq log {service.log_path.name} (tail)", service.logs()))
    return report


@pytest.fixture
def service_factory(pg: PgServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []
    request.node.taskq_services = started  # for pytest_runtest_makereport

    def make(
        database_url: str | None = None, *, embedded: bool = False, port: int | None = None, **env: str
    ) -> Service:
        """`embedded=True`: no TASKQ_DATABASE_URL, so the service starts its own PostgreSQL (in TASKQ_DATA_DIR)."""
        url = "" if embedded else (database_url or pg.fresh_database())
        service = Service(url, tmp_path / f"service{len(started)}.log", env, port)
        started.append(service)
        return service

    yield make
    for service in started:
        if service.process is not None and service.process.poll() is None:
            code = service.stop()
            assert code == 0, f"taskq serve exited with {code}:\n{service.logs()}"
        service.http.close()


@pytest.fixture
def service(service_factory: Callable[..., Service]) -> Service:
    return service_factory().start()


_SHARED_ROOTS: set[int] = set()


@pytest.fixture(scope="module")
def shared_service(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for a module whose tests leave no state behind that another could see (bad input)."""
    with module_service(Service(pg.fresh_database(), tmp_path_factory.mktemp("shared") / "service.log", {})) as s:
        yield s


@contextlib.contextmanager
def module_service(service: Service) -> Iterator[Service]:
    """Start `service` for a whole module: the leftover-process check spares its tree until it stops."""
    service.start()
    _SHARED_ROOTS.add(service.pid)
    try:
        yield service
    finally:
        _SHARED_ROOTS.discard(service.pid)
        code = service.stop()
        service.http.close()
    assert code == 0, f"taskq serve exited with {code}:\n{service.logs()}"


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test stops what it started: no child process may outlive it (module-shared services aside)."""
    yield

    def leftovers() -> list[psutil.Process]:
        # Our descendants first, the shared services' after: a module-shared service keeps forking (its
        # zygote replaces spare workers), and a worker forked between the two reads must be found among
        # the shared ones, not counted as a leftover. A process never moves into a shared tree, so the
        # later read holds every shared process of the earlier one.
        candidates = psutil.Process().children(recursive=True)
        shared: set[int] = set()
        for pid in _SHARED_ROOTS:
            with contextlib.suppress(psutil.Error):
                shared |= {pid} | {p.pid for p in psutil.Process(pid).children(recursive=True)}
        found = []
        for p in candidates:
            with contextlib.suppress(psutil.Error):
                if p.pid not in shared and p.is_running() and p.status() != "zombie":
                    found.append(p)
        return found

    with contextlib.suppress(BaseException):
        wait_until(lambda: not leftovers(), timeout=10, what="child processes to exit")
    remaining = leftovers()
    described = [_describe(p) for p in remaining]  # before the kill: who it is and whose child
    for process in remaining:
        with contextlib.suppress(psutil.Error):
            process.kill()
    assert not remaining, f"processes left running: {described}"
