"""Job types: the `@job_type` decorator, the registry it fills, and what a type declares beyond its
handler (per-type submission defaults, the payload's shape, worker reuse).

It lives in the client package so that handler code reads `from taskq import job_type, JobContext,
PermanentError` and runs (in `taskq.testing`, or to `defer` jobs) where only the client is installed; the
service's `service.handlers` builds on this registry (one registry, one `PermanentError` class).

A handler annotated `payload: SomeStruct` (a msgspec Struct, a dataclass, a TypedDict: anything msgspec
decodes) receives the payload decoded into that type; a payload that does not fit fails the attempt
permanently (and the API, which knows the type, refuses it at submit with a 422 naming the field).
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import msgspec

from .models import Resources, RetryConfig

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .models import Job

P = ParamSpec("P")
R = TypeVar("R")

PRIORITIES = ("critical", "high", "normal", "low")


class PermanentError(Exception):
    """A failure that retrying cannot fix: the job fails at once, whatever attempts are left."""


class PayloadMismatch(PermanentError):
    """The payload does not decode as the handler's annotated payload type; retrying cannot fix that."""


class InvalidJobType(ValueError):
    """A `@job_type` declaration that cannot work (a repeated name, a bad default, a payload annotation
    msgspec cannot decode): raised when the handler module is imported, so a deployment fails at start."""


_json = msgspec.json.Encoder()
_UNTYPED = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


class JobType(Generic[P, R]):
    """A registered job type: still callable as the handler it wraps, plus `defer` (submit a job of this
    type through the default client, see `taskq.configure`) and `options(...)` (the same with
    submission options: priority, job_id, depends_on, run_at, ...)."""

    def __init__(
        self,
        name: str,
        handler: Callable[P, R],
        *,
        reuse_worker: bool,
        defaults: Mapping[str, Any],
        payload_type: Any,
    ) -> None:
        self.name = name
        self.handler = handler
        self.reuse_worker = reuse_worker
        self.defaults: dict[str, Any] = dict(defaults)  # in the API's field names, only those declared
        self.payload_type = payload_type  # None: the handler takes the payload as a dict
        self._decoder = msgspec.json.Decoder(payload_type) if payload_type is not None else None
        self.__doc__ = handler.__doc__
        self.__wrapped__ = handler

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.handler(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job type {self.name!r} ({getattr(self.handler, '__qualname__', self.handler)!r})>"

    def decode_payload(self, payload: Mapping[str, Any]) -> Any:
        """The payload as the handler takes it: the dict itself, or decoded into its annotated type.
        Raises PayloadMismatch naming the field (`... Expected `str`, got `int` - at `$.to``)."""
        try:
            return self.check_payload(payload)
        except msgspec.ValidationError as exc:
            raise PayloadMismatch(f"payload does not fit {_type_name(self.payload_type)}: {exc}") from None

    def check_payload(self, payload: Mapping[str, Any]) -> Any:
        """`decode_payload`, raising msgspec's own ValidationError (the API names the field from it). The
        payload is decoded as JSON, as it travelled: a datetime field takes an ISO string."""
        if self._decoder is None:
            return payload
        return self._decoder.decode(_json.encode(payload))

    # --- submitting jobs of this type -----------------------------------------------------------------

    def options(
        self,
        *,
        job_id: str | None = None,
        priority: str | None = None,
        depends_on: Iterable[str] | None = None,
        run_at: datetime | None = None,
        timeout: float | None = None,
        retry: RetryConfig | dict[str, Any] | None = None,
        resources: Resources | dict[str, int] | None = None,
        idempotency_key: str | None = None,
        client: Client | AsyncClient | None = None,
    ) -> Deferral:
        """Submission options for `defer`/`defer_async`: `send_email.options(priority="high").defer(...)`.
        What is left out gets the type's defaults (declared in `@job_type`), then the server's."""
        return Deferral(
            self.name,
            dict(
                job_id=job_id,
                priority=priority,
                depends_on=None if depends_on is None else list(depends_on),
                run_at=run_at,
                timeout=timeout,
                retry=retry,
                resources=resources,
            ),
            idempotency_key,
            client,
        )

    def defer(self, payload: Any = None, /, **fields: Any) -> Job:
        """Submit a job of this type: `send_email.defer(to="a@b")`, or `send_email.defer(SendEmail(...))`.
        Returns the job as the service accepted it."""
        return self.options().defer(payload, **fields)

    async def defer_async(self, payload: Any = None, /, **fields: Any) -> Job:
        return await self.options().defer_async(payload, **fields)


class Deferral:
    """A job type with submission options, ready to `defer`. Made by `JobType.options`."""

    def __init__(
        self,
        type_name: str,
        options: dict[str, Any],
        idempotency_key: str | None,
        client: Client | AsyncClient | None,
    ) -> None:
        self.type_name = type_name
        self._options = options
        self._idempotency_key = idempotency_key
        self._client = client

    def defer(self, payload: Any = None, /, **fields: Any) -> Job:
        from . import connection
        from .client import AsyncClient, Client

        if isinstance(self._client, AsyncClient):
            raise TypeError("this deferral has an AsyncClient: use defer_async")
        body = payload_of(payload, fields)
        if eager_runner is not None:
            return eager_runner(self.type_name, body, self._options)
        client = self._client if isinstance(self._client, Client) else connection.default_client()
        return client.submit(self.type_name, body, idempotency_key=self._idempotency_key, **self._options)

    async def defer_async(self, payload: Any = None, /, **fields: Any) -> Job:
        from . import connection
        from .client import AsyncClient, Client

        if isinstance(self._client, Client):
            raise TypeError("this deferral has a blocking Client: use defer")
        body = payload_of(payload, fields)
        if eager_runner is not None:
            return eager_runner(self.type_name, body, self._options)
        if isinstance(self._client, AsyncClient):
            return await self._client.submit(
                self.type_name, body, idempotency_key=self._idempotency_key, **self._options
            )
        async with connection.async_client() as client:
            return await client.submit(self.type_name, body, idempotency_key=self._idempotency_key, **self._options)


# Set by `taskq.testing.eager()`: `defer` runs the handler in-process instead of submitting.
eager_runner: Callable[[str, dict[str, Any], dict[str, Any]], Job] | None = None


def payload_of(payload: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A payload given as one value (a dict, a Struct, a dataclass) or as keyword fields, as a JSON
    object's builtins (datetimes become ISO strings, as on the wire)."""
    if payload is not None and fields:
        raise TypeError("give the payload as one value or as keyword fields, not both")
    value = msgspec.to_builtins(payload if payload is not None else dict(fields))
    if not isinstance(value, dict):
        raise TypeError(f"a payload is a JSON object, got {type(payload).__name__}")
    return value


# ------------------------------------------------------------------------------------------------ registry

REGISTRY: dict[str, JobType[..., Any]] = {}


def job_type(
    name: str,
    *,
    retry: RetryConfig | dict[str, Any] | None = None,
    timeout: float | None = None,
    resources: Resources | dict[str, int] | None = None,
    priority: str | None = None,
    reuse_worker: bool = False,
) -> Callable[[Callable[P, R]], JobType[P, R]]:
    """Register the decorated function as the handler of job type `name`.

    `retry`, `timeout`, `resources` and `priority` are this type's defaults: the API applies them to a
    submission that leaves the field out (a submission's own fields win, field by field inside `retry`
    and `resources`). `reuse_worker=True` lets the supervisor run the next attempt of this type in the
    same worker process once one has ended cleanly (see the README: only for handlers that leave no
    state behind)."""
    defaults = _defaults(name, retry=retry, timeout=timeout, resources=resources, priority=priority)

    def register(handler: Callable[P, R]) -> JobType[P, R]:
        existing = REGISTRY.get(name)
        if existing is not None and existing.handler is not handler:
            raise InvalidJobType(f"job type {name!r} is registered twice")
        registered = JobType(
            name, handler, reuse_worker=reuse_worker, defaults=defaults, payload_type=_payload_type(name, handler)
        )
        REGISTRY[name] = registered
        return registered

    return register


def _defaults(
    name: str,
    *,
    retry: RetryConfig | dict[str, Any] | None,
    timeout: float | None,
    resources: Resources | dict[str, int] | None,
    priority: str | None,
) -> dict[str, Any]:
    """The declared defaults in the API's field names. Only the shape is checked here; the service
    checks the values against its own limits when it loads the module (`taskq serve` refuses to start)."""
    defaults: dict[str, Any] = {}
    if priority is not None:
        if priority not in PRIORITIES:
            raise InvalidJobType(f"job type {name!r}: priority must be one of {', '.join(PRIORITIES)}")
        defaults["priority"] = priority
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
            raise InvalidJobType(f"job type {name!r}: timeout must be a number of seconds")
        defaults["timeout_seconds"] = timeout
    for field, value, struct in (("retry_config", retry, RetryConfig), ("resource_requirements", resources, Resources)):
        if value is None:
            continue
        try:
            given = value if isinstance(value, dict) else msgspec.to_builtins(value)
            unknown = sorted(set(given) - set(struct.__struct_fields__))
            if unknown:
                raise TypeError(f"unknown field {unknown[0]!r}; known: {', '.join(struct.__struct_fields__)}")
            msgspec.convert(given, struct)  # the types of the fields; the service checks the ranges
        except (msgspec.ValidationError, TypeError) as exc:
            raise InvalidJobType(f"job type {name!r}: {field}: {exc}") from None
        defaults[field] = dict(given)
    return defaults


def _payload_type(name: str, handler: Callable[..., Any]) -> Any:
    """The annotation of the handler's second parameter when it is a type to decode the payload into;
    None for no annotation, `Any` or a dict/Mapping."""
    parameters = list(inspect.signature(handler).parameters.values())
    if len(parameters) < 2 or parameters[1].annotation is inspect.Parameter.empty:
        return None
    annotation = parameters[1].annotation
    if isinstance(annotation, str):  # `from __future__ import annotations`: resolve it where it was written
        try:
            annotation = eval(annotation, getattr(handler, "__globals__", {}), None)
        except Exception as exc:
            raise InvalidJobType(
                f"job type {name!r}: cannot resolve the payload annotation {annotation!r} ({exc}); "
                "import its type at module level"
            ) from None
    if annotation is Any or (typing.get_origin(annotation) or annotation) in _UNTYPED:
        return None
    try:
        msgspec.json.Decoder(annotation)
    except TypeError as exc:
        raise InvalidJobType(f"job type {name!r}: msgspec cannot decode a payload as {annotation!r}: {exc}") from None
    return annotation


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)
