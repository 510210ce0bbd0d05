"""`db/schema.sql` (dbmate's dump) must describe exactly what the migrations build, and every migration
must be reversible in form (both dbmate sections present)."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "db" / "schema.sql"
MIGRATIONS = sorted((ROOT / "db" / "migrations").glob("*.sql"))

CATALOG_QUERIES = {
    "columns": """
        SELECT c.relname AS table_name, a.attnum AS position, a.attname AS column_name,
               format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
               a.attidentity AS identity, a.attgenerated AS generated,
               pg_get_expr(d.adbin, d.adrelid) AS default_value
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 2
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2
    """,
    "constraints": """
        SELECT c.relname AS table_name, k.conname, k.contype, pg_get_constraintdef(k.oid) AS definition
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = k.connamespace
        WHERE n.nspname = 'public'
        ORDER BY 1, 2
    """,
    "enums": """
        SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels
        FROM pg_type t
        JOIN pg_enum e ON e.enumtypid = t.oid
        JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public'
        GROUP BY t.typname
        ORDER BY 1
    """,
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, min_value, max_value, cache_size, cycle
        FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1
    """,
    # The dump ends with dbmate's record of applied versions: it must list every migration.
    "applied_migrations": "SELECT version FROM public.schema_migrations ORDER BY 1",
}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


async def catalog(url: str) -> dict[str, list[dict[str, Any]]]:
    conn = await asyncpg.connect(url)
    try:
        return {kind: [dict(row) for row in await conn.fetch(sql)] for kind, sql in CATALOG_QUERIES.items()}
    finally:
        await conn.close()


async def load_schema_file(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA_FILE.read_text(encoding="utf-8"))
    finally:
        await conn.close()


def test_schema_file_builds_the_same_catalog_as_the_migrations(pg: Any) -> None:
    migrated_url = pg.fresh_database()
    name = f"schema_{uuid.uuid4().hex[:12]}"
    pg.psql(f'CREATE DATABASE "{name}"')
    try:
        from_file_url = with_database(migrated_url, name)
        asyncio.run(load_schema_file(from_file_url))

        from_file = asyncio.run(catalog(from_file_url))
        migrated = asyncio.run(catalog(migrated_url))
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{name}"')

    assert migrated["columns"], "the migrated database has no tables: the comparison would prove nothing"
    assert migrated["enums"], "the migrated database has no enum types: the comparison would prove nothing"
    for kind in CATALOG_QUERIES:
        assert from_file[kind] == migrated[kind], f"db/schema.sql and db/migrations disagree on {kind}"


def test_there_is_at_least_one_migration() -> None:
    assert MIGRATIONS, "db/migrations holds no .sql files"


@pytest.mark.parametrize("migration", MIGRATIONS, ids=[path.name for path in MIGRATIONS])
def test_every_migration_has_an_up_and_a_down_section(migration: Path) -> None:
    text = migration.read_text(encoding="utf-8")
    up = re.search(r"^-- migrate:up\b", text, re.MULTILINE)
    down = re.search(r"^-- migrate:down\b", text, re.MULTILINE)

    assert up is not None, f"{migration.name} has no '-- migrate:up' section"
    assert down is not None, f"{migration.name} has no '-- migrate:down' section"
    assert up.start() < down.start(), f"{migration.name}: '-- migrate:down' comes before '-- migrate:up'"
