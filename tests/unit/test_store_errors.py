"""Which database failures mean "unavailable, retry" (503) rather than a defect."""

from __future__ import annotations

import asyncpg
import pytest

from service.store.errors import DatabaseUnavailable, classify_db_error


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    ],
)
def test_a_lost_or_restarting_server_is_unavailable(exc: BaseException) -> None:
    assert isinstance(classify_db_error(exc), DatabaseUnavailable)


def test_a_constraint_violation_is_not() -> None:
    exc = asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint")
    assert classify_db_error(exc) is exc
