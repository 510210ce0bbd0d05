"""`taskq serve` (the root supervisor) and `taskq migrate`."""

from __future__ import annotations

import argparse
import sys

from service import settings as settings_module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskq", description="taskq: a durable task queue service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="start the whole service (settings from TASKQ_* variables)")
    commands.add_parser("migrate", help="apply the database migrations and exit")
    args = parser.parse_args(argv)
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as exc:
        print(f"taskq: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from service import handlers
        from service.root import serve

        try:  # the actors import them too; a bad module name should stop the service here, in one line
            handlers.load(settings.handlers)
        except handlers.UnknownHandlerModule as exc:
            print(f"taskq: {exc}", file=sys.stderr)
            return 2
        return serve(settings)
    from service.embedded_pg import EmbeddedPostgres
    from service.store.migrations import migrate

    embedded = None
    url = settings.database_url
    if url is None:
        embedded = EmbeddedPostgres(settings.data_dir)
        url = embedded.start()
    try:
        migrate(url)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
