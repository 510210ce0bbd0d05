"""Regenerates db/schema.sql: applies every migration to a scratch embedded PostgreSQL and lets dbmate
dump the result (`make schema`). tests/integration/test_schema_file.py fails when it is stale."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from service.embedded_pg import EmbeddedPostgres
from service.store.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="taskq-schema-") as scratch:
        server = EmbeddedPostgres(scratch)
        url = server.start(database="taskq_schema")
        os.environ["PATH"] = f"{server.bin_dir()}{os.pathsep}{os.environ['PATH']}"  # dbmate runs pg_dump
        try:
            migrate(url, dump_schema_to=ROOT / "db" / "schema.sql")
        finally:
            server.stop()
    print("wrote db/schema.sql")


if __name__ == "__main__":
    main()
