"""`taskq serve` (the root supervisor), `taskq migrate` and `taskq keys` (create, list, revoke API keys),
and the client commands of `service.client_commands` (submit, get, list, logs, ... against a running
service), which need none of the service's settings."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from service import client_commands
from service import settings as settings_module

T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskq", description="taskq: a durable task queue service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="start the whole service (settings from TASKQ_* variables)")
    commands.add_parser("migrate", help="apply the database migrations and exit")
    keys = commands.add_parser("keys", help="manage API keys (in TASKQ_DATABASE_URL, or the embedded PostgreSQL)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (it is shown only this once)")
    create.add_argument("--name", required=True, help="what the key is for, e.g. ci (1-100 characters)")
    create.add_argument("--scope", required=True, help="comma-separated scopes: submit, read, admin")
    create.add_argument("--rate-submit", help="the key's own submission rate limit, e.g. 100/s or 6000/m:500")
    create.add_argument("--rate-requests", help="the key's own rate limit on every other request")
    key_commands.add_parser("list", help="list the keys (never their secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key: every node refuses it within a second")
    revoke.add_argument("key_id")
    client_commands.add_parsers(commands)
    args = parser.parse_args(argv)
    if args.command in client_commands.COMMANDS:
        return client_commands.run(args)
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as exc:
        print(f"taskq: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from service import handlers
        from service.api.job_types import declared_defaults_problem
        from service.root import serve

        try:  # the actors import them too; a bad module name should stop the service here, in one line
            handlers.load(settings.handlers)
        except handlers.UnknownHandlerModule as exc:
            print(f"taskq: {exc}", file=sys.stderr)
            return 2
        if (problem := declared_defaults_problem()) is not None:
            print(f"taskq: {problem}", file=sys.stderr)
            return 2
        return serve(settings)
    if args.command == "keys":
        return _keys(settings, args)
    _with_database(settings, lambda url: None)
    return 0


def _with_database(settings: settings_module.Settings, work: Callable[[str], T]) -> T:
    """`work` on the migrated database: TASKQ_DATABASE_URL's, or the embedded one of TASKQ_DATA_DIR."""
    from service.embedded_pg import EmbeddedPostgres
    from service.store.migrations import migrate

    embedded = None
    url = settings.database_url
    if url is None:
        embedded = EmbeddedPostgres(settings.data_dir)
        url = embedded.start()
    try:
        migrate(url)
        return work(url)
    finally:
        if embedded is not None:
            embedded.stop()


def _keys(settings: settings_module.Settings, args: argparse.Namespace) -> int:
    from service import credentials

    if args.keys_command == "create":
        scopes = [s.strip() for s in args.scope.split(",") if s.strip()]
        problem = credentials.name_problem(args.name) or credentials.scope_problem(scopes)
        if problem is not None:
            which = "--name" if credentials.name_problem(args.name) else "--scope"
            print(f"taskq: {which} {problem}", file=sys.stderr)
            return 2
        rates: list[str | None] = []
        for flag, raw in (("--rate-submit", args.rate_submit), ("--rate-requests", args.rate_requests)):
            try:
                rates.append(None if raw is None else settings_module.Rate.parse(raw).text)
            except ValueError:
                print(f"taskq: {flag} must be a rate such as 100/s, 6000/m or 10/h, optionally :burst", file=sys.stderr)
                return 2
        ordered = credentials.ordered(scopes)
        return _with_database(settings, lambda url: _run(url, _create, args.name, ordered, tuple(rates)))
    if args.keys_command == "list":
        return _with_database(settings, lambda url: _run(url, _list))
    if not credentials.KEY_ID.match(args.key_id):
        print(f"taskq: no API key has id {args.key_id!r}", file=sys.stderr)
        return 1
    return _with_database(settings, lambda url: _run(url, _revoke, args.key_id))


def _run(url: str, command: Callable[..., Coroutine[Any, Any, int]], *args: Any) -> int:
    async def connected() -> int:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return await command(conn, *args)
        finally:
            await conn.close()

    return asyncio.run(connected())


async def _create(conn: Any, name: str, scopes: list[str], rates: tuple[str | None, str | None]) -> int:
    from service.api.keys import create_key

    stored, key = await create_key(conn, name, scopes, rates)
    print(f"key_id: {stored.key_id}")
    print(f"scopes: {','.join(stored.scopes)}")
    if stored.rate_limit_submit or stored.rate_limit_requests:
        print(f"rate limits: submit {stored.rate_limit_submit or '-'}, requests {stored.rate_limit_requests or '-'}")
    print(f"key: {key}")
    print("The key is shown only now: store it (it is kept only as a hash).", file=sys.stderr)
    return 0


async def _list(conn: Any) -> int:
    from service.api.submit import timestamp
    from service.store import gateway

    print("key_id        name                  scopes             created_at                revoked_at")
    for key in await gateway.list_api_keys(conn):
        revoked = timestamp(key.revoked_at) or "-"
        print(f"{key.key_id:<13} {key.name:<21} {','.join(key.scopes):<18} {timestamp(key.created_at)}  {revoked}")
    return 0


async def _revoke(conn: Any, key_id: str) -> int:
    from service.store import gateway

    revoked = await gateway.revoke_api_key(conn, key_id)
    if revoked is None:
        print(f"taskq: no API key has id {key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {key_id} ({revoked.name}); every node refuses it within a second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
