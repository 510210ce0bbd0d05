"""The embedded PostgreSQL (the `pgserver` package) used when no TASKQ_DATABASE_URL is given.

It lives in `<data_dir>/pg` and survives restarts. After a `kill -9` of the service the postmaster may
still be running (it is a daemon of its own) or may have left a stale `postmaster.pid`; `pgserver`
re-uses a live one and starts over a stale one, and we stop it ourselves on a clean exit.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.pgdata = Path(data_dir).resolve() / "pg"
        self._server: object | None = None

    def start(self, database: str = "taskq") -> str:
        """Start (or adopt) the server and return an asyncpg/libpq URL for `database`."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from pgserver.postgres_server import PostgresServer

            logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every command it runs

            self.pgdata.mkdir(parents=True, exist_ok=True)
            # cleanup_mode=None: pgserver's own atexit hook must not race our explicit stop().
            server = PostgresServer(self.pgdata, cleanup_mode=None)
        self._server = server
        info = server.get_postmaster_info()
        return f"postgresql://postgres@/{database}?host={info.socket_dir}"

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid, from its `postmaster.pid` (None without one)."""
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self._server is None:
            return
        from pgserver import _commands

        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # generated at import time

        user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs the postmaster unprivileged
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user, timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log.warning("embedded PostgreSQL did not stop cleanly: %s", exc)
        self._server = None

    @staticmethod
    def bin_dir() -> Path:
        from pgserver._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)
