"""Typed errors, built from the API's RFC 9457 problem documents in one place (`error_from_response`)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import msgspec


class TaskqError(Exception):
    """An answer the client cannot turn into a result. `status` is the HTTP status (None when no answer
    came at all); `errors` holds the problem's `[{field, message}]`."""

    def __init__(
        self,
        status: int | None,
        title: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.retry_after = retry_after
        super().__init__(f"{status} {title}: {detail}" if status is not None else f"{title}: {detail}")


class Invalid(TaskqError):
    """400 or 422: the request does not satisfy the schema. `field` names the first field at fault."""

    @property
    def field(self) -> str | None:
        return self.errors[0].get("field") if self.errors else None


class Unauthorized(TaskqError):
    """401: no API key, or a wrong or revoked one."""


class Forbidden(TaskqError):
    """403: the key lacks the route's scope (or a browser origin is refused)."""


class NotFound(TaskqError):
    """404: no job has that id."""


class Conflict(TaskqError):
    """409: same job_id with a different body, or the job is in a state that refuses the action."""


class TooManyRequests(TaskqError):
    """429: over a rate limit or the live-job limit; `retry_after` says when to try again (seconds)."""


class Unavailable(TaskqError):
    """503: the scheduler or database is unreachable, or the service is draining."""


class ConnectionFailed(TaskqError):
    """No answer at all: the service could not be reached (status is None)."""


_BY_STATUS: dict[int, type[TaskqError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: TooManyRequests,
    503: Unavailable,
}


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` in seconds; the HTTP-date form (which this API never sends) counts as absent."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> TaskqError:
    """The typed error of a non-2xx answer. A body that is not a problem document (uvicorn's own plain
    `503` when connections run out, a proxy's HTML page) still gives the right class, with its text."""
    problem: Any = None
    with contextlib.suppress(msgspec.DecodeError):
        problem = msgspec.json.decode(body)
    if not isinstance(problem, dict):
        problem = {}
    text = body.decode("utf-8", "replace").strip()
    title = problem.get("title") if isinstance(problem.get("title"), str) else f"HTTP {status}"
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) else text[:500]
    raw_errors = problem.get("errors")
    errors = (
        [{str(k): str(v) for k, v in e.items()} for e in raw_errors if isinstance(e, dict)]
        if isinstance(raw_errors, list)
        else []
    )
    cls = _BY_STATUS.get(status, TaskqError)
    return cls(status, title, detail, errors, retry_after_seconds(headers))
