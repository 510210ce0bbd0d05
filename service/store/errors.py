"""Classifies database failures once: the callers only see `DatabaseUnavailable` or the original error."""

from __future__ import annotations

import asyncio

import asyncpg


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached right now; the operation may succeed later."""


_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P", "53")  # connection exceptions, shutdown, insufficient resources
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # "cannot switch to state 15; another operation is in progress": what asyncpg raises when the server
    # dies while the pool resets a connection it releases (seen when PostgreSQL was SIGKILLed under a
    # submit burst). The pool has terminated that connection; a fresh one works once the server is back.
    asyncpg.exceptions.InternalClientError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        return state.startswith(_TRANSIENT_SQLSTATE_PREFIXES) or state in {"40001", "40P01"}
    return isinstance(exc, _TRANSIENT_TYPES)


def classify_db_error(exc: BaseException) -> BaseException:
    return DatabaseUnavailable(str(exc) or type(exc).__name__) if is_transient(exc) else exc
