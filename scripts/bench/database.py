"""The PostgreSQL the benchmark runs on: an embedded one (pgserver) in a temporary directory unless
TASKQ_DATABASE_URL names a server; one fresh database per service run, migrated with dbmate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def fetch(url: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, timeout=30)
        try:
            return list(await conn.fetch(statement, *args, timeout=120))
        finally:
            await conn.close()

    return asyncio.run(run())


def fetchval(url: str, statement: str, *args: Any) -> Any:
    rows = fetch(url, statement, *args)
    return rows[0][0] if rows else None


class PgServer:
    """The server; `database()` makes a fresh migrated database on it, dropped again by `stop()`."""

    def __init__(self) -> None:
        self.external = os.environ.get("TASKQ_DATABASE_URL") or None
        self.embedded: Any = None
        self.tempdir: str | None = None
        self.admin_url = ""
        self.version = ""
        self.created: list[str] = []

    @property
    def kind(self) -> str:
        return "external server, TASKQ_DATABASE_URL" if self.external else "embedded, pgserver"

    def start(self) -> None:
        if self.external:
            self.admin_url = self.external
        else:
            from service.embedded_pg import EmbeddedPostgres

            self.tempdir = tempfile.mkdtemp(prefix="taskq-bench-pg-")
            self.embedded = EmbeddedPostgres(self.tempdir)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.admin_url = self.embedded.start(database="postgres")
        self.version = str(fetchval(self.admin_url, "SHOW server_version"))

    def database(self, label: str) -> Database:
        from service.store.migrations import migrate

        name = f"taskq_bench_{label}_{uuid.uuid4().hex[:8]}"
        try:
            fetch(self.admin_url, f'CREATE DATABASE "{name}"')
        except (OSError, asyncpg.PostgresError) as exc:
            where = "TASKQ_DATABASE_URL" if self.external else "the embedded PostgreSQL"
            raise RuntimeError(f"cannot create database {name} on {where}: {exc}") from exc
        self.created.append(name)
        url = with_database(self.admin_url, name)
        migrate(url)
        return Database(url, self)

    def cpu_seconds(self) -> float | None:
        """CPU of the embedded server's processes (postmaster, live backends and reaped ones); None when
        the server is external."""
        if self.embedded is None:
            return None
        try:
            pid = int((Path(self.embedded.pgdata) / "postmaster.pid").read_text().split()[0])
            postmaster = psutil.Process(pid)
            t = postmaster.cpu_times()
            total = float(t.user + t.system + t.children_user + t.children_system)
            for child in postmaster.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
            return total
        except (OSError, ValueError, psutil.Error):
            return None

    def stop(self) -> None:
        if self.external:
            for name in self.created:
                with contextlib.suppress(Exception):
                    fetch(self.admin_url, f'DROP DATABASE IF EXISTS "{name}"')
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
        if self.tempdir is not None:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None


class Database:
    def __init__(self, url: str, server: PgServer) -> None:
        self.url = url
        self.server = server

    def fetch(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        return fetch(self.url, statement, *args)

    def fetchval(self, statement: str, *args: Any) -> Any:
        return fetchval(self.url, statement, *args)

    def size(self) -> int:
        return int(self.fetchval("SELECT pg_database_size(current_database())"))

    def jobs(self) -> int:
        return int(self.fetchval("SELECT count(*) FROM jobs"))

    def settle(self) -> None:
        """No dead rows left for autovacuum to clean up in the middle of the next run, no checkpoint debt."""
        self.fetch("VACUUM ANALYZE")
        self.fetch("CHECKPOINT")


# Timestamps in microseconds since the epoch, exactly as PostgreSQL holds them (the API rounds to ms).
US = "(extract(epoch FROM {0}) * 1000000)::bigint"
