"""RFC 9457 problem details: every error the API returns goes through here, so none is a 500 with a trace."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from service.errors import TaskqError, Unauthenticated
from service.store.errors import DatabaseUnavailable, is_transient

log = logging.getLogger("taskq.api")

PROBLEM_JSON = "application/problem+json"


Problem = tuple[int, dict[str, object], dict[str, str] | None]  # status, body, extra headers


def problem_parts(
    status: int, title: str, detail: str, *, errors: list[dict[str, str]] | None = None, retry_after: int | None = None
) -> Problem:
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return status, body, headers


def problem(
    status: int, title: str, detail: str, *, errors: list[dict[str, str]] | None = None, retry_after: int | None = None
) -> Response[dict[str, object]]:
    return _response(problem_parts(status, title, detail, errors=errors, retry_after=retry_after))


def _response(parts: Problem) -> Response[dict[str, object]]:
    status, body, headers = parts
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def on_taskq_error(_: Request[Any, Any, Any], exc: TaskqError) -> Response[dict[str, object]]:
    return _response(taskq_problem(exc))


def on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    return _response(http_problem(exc))


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    return _response(unexpected_problem(exc, request.method, request.url.path))


def problem_of(exc: Exception, method: str, path: str) -> Problem:
    """The problem for any exception, chosen as Litestar chooses among the handlers above (by the
    exception's class): for the routes served in front of Litestar (`fast_path.fast_submit`)."""
    if isinstance(exc, TaskqError):
        return taskq_problem(exc)
    if isinstance(exc, HTTPException):
        return http_problem(exc)
    return unexpected_problem(exc, method, path)


def taskq_problem(exc: TaskqError) -> Problem:
    status, body, headers = problem_parts(
        exc.status_code, exc.title, exc.detail, errors=exc.errors, retry_after=exc.retry_after_seconds
    )
    if isinstance(exc, Unauthenticated):  # RFC 9110 requires the challenge on every 401
        headers = {**(headers or {}), "WWW-Authenticate": exc.challenge}
    return status, body, headers


def http_problem(exc: HTTPException) -> Problem:
    detail = exc.detail or "request rejected"
    if exc.status_code == 413:
        detail = "request body is too large"
    errors = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        # Litestar's own parameter validation (query and path parameters): name each parameter.
        errors = [
            {"field": str(item.get("key", "")), "message": str(item.get("message", "invalid"))}
            for item in exc.extra
            if isinstance(item, dict)
        ]
        if errors:
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    status, body, headers = problem_parts(exc.status_code, _title(exc.status_code), detail, errors=errors)
    if exc.headers:  # what Litestar attached to its own answer, e.g. a 405's `Allow` (RFC 9110 requires it)
        headers = {**(headers or {}), **exc.headers}
        if exc.status_code == 405 and "allow" in exc.headers:
            body["detail"] = f"this route allows {exc.headers['allow']}"
    return status, body, headers


def unexpected_problem(exc: Exception, method: str, path: str) -> Problem:
    if isinstance(exc, DatabaseUnavailable) or is_transient(exc):
        return problem_parts(503, "Service unavailable", "the database is unreachable; retry shortly", retry_after=1)
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return problem_parts(500, "Internal error", "an internal error occurred; it has been logged")


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
