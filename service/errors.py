"""Typed errors of the service. Each class's docstring is its default message; the API turns them
into RFC 9457 problem details in one place (`service.api.problems`)."""

from __future__ import annotations

from typing import ClassVar


class TaskqError(Exception):
    """Something went wrong."""

    status_code: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    retry_after_seconds: int | None = None  # sent as Retry-After when set

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, str]] | None = None) -> None:
        self.detail = detail or (self.__doc__ or self.title).strip()
        self.errors = errors or []
        super().__init__(self.detail)


class MalformedRequest(TaskqError):
    """The request body is not valid JSON."""

    status_code = 400
    title = "Malformed request"


class UnsupportedMediaType(TaskqError):
    """The request body must be JSON, sent as Content-Type: application/json."""

    status_code = 415
    title = "Unsupported media type"


class InvalidRequest(TaskqError):
    """The request does not satisfy the job schema."""

    status_code = 422
    title = "Invalid request"

    @classmethod
    def field(cls, field: str, message: str) -> InvalidRequest:
        return cls(f"{field}: {message}", errors=[{"field": field, "message": message}])


class InvalidQuery(InvalidRequest):
    """A query parameter is not valid."""

    status_code = 400
    title = "Invalid query parameter"


class UnknownJobType(InvalidRequest):
    """The job type is not registered."""


class DependencyNotFound(InvalidRequest):
    """A job named in depends_on does not exist."""


class DependencyCycle(InvalidRequest):
    """The dependencies form a cycle."""


class ResourcesExceedCapacity(InvalidRequest):
    """The job needs more resources than this node has."""


class JobNotFound(TaskqError):
    """No job has this id."""

    status_code = 404
    title = "Job not found"


class IdempotencyConflict(TaskqError):
    """A job with this id exists with a different body."""

    status_code = 409
    title = "Idempotency conflict"


class JobNotCancellable(TaskqError):
    """The job has already finished."""

    status_code = 409
    title = "Job not cancellable"


class JobNotRetryable(TaskqError):
    """Only failed jobs can be re-driven."""

    status_code = 409
    title = "Job not retryable"


class ServiceUnavailable(TaskqError):
    """The service cannot take this request right now; retry shortly."""

    status_code = 503
    title = "Service unavailable"
    retry_after_seconds = 1


class Unauthenticated(TaskqError):
    """A valid API key is required: send it as Authorization: Bearer <key>."""

    status_code = 401
    title = "Unauthorized"
    challenge: ClassVar[str] = 'Bearer realm="taskq"'

    @classmethod
    def because(cls, message: str) -> Unauthenticated:
        return cls(f"Authorization: {message}", errors=[{"field": "Authorization", "message": message}])


class MissingScope(TaskqError):
    """The API key does not have the scope this route needs."""

    status_code = 403
    title = "Forbidden"

    @classmethod
    def needing(cls, scope: str, method: str, route: str) -> MissingScope:
        message = f"the key lacks the {scope!r} scope, which {method} {route} needs"
        return cls(message, errors=[{"field": "Authorization", "message": message, "scope": scope}])


class OriginNotAllowed(TaskqError):
    """The browser page's origin is not allowed to call this API (see TASKQ_ALLOWED_ORIGINS)."""

    status_code = 403
    title = "Forbidden"

    @classmethod
    def of(cls, origin: str) -> OriginNotAllowed:
        message = f"origin {origin!r} is neither this API's own nor listed in TASKQ_ALLOWED_ORIGINS"
        return cls(message, errors=[{"field": "Origin", "message": message}])


class KeyNotFound(TaskqError):
    """No API key has this id."""

    status_code = 404
    title = "Key not found"


class ScheduleNotFound(TaskqError):
    """No schedule has this id."""

    status_code = 404
    title = "Schedule not found"

    @classmethod
    def named(cls, schedule_id: str) -> ScheduleNotFound:
        message = f"no schedule has id {schedule_id!r}"
        return cls(message, errors=[{"field": "schedule_id", "message": message}])


class ScheduleExists(TaskqError):
    """A schedule with this id exists already."""

    status_code = 409
    title = "Schedule exists"


class TypeNotFound(TaskqError):
    """No handler is registered for this job type."""

    status_code = 404
    title = "Type not found"


class TooManyRequests(TaskqError):
    """Too many requests; retry after the time given."""

    status_code = 429
    title = "Too many requests"

    def __init__(
        self, detail: str, *, retry_after_seconds: int = 1, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail, errors=errors)
        self.retry_after_seconds = retry_after_seconds
