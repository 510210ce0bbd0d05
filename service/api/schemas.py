"""Request and response bodies, as msgspec Structs. Validation is declarative (`Meta` constraints);
what a constraint cannot say (capacity, known types, finite payload numbers) is checked in `validate`."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from service.errors import (
    InvalidRequest,
    MalformedRequest,
    ResourcesExceedCapacity,
    UnknownJobType,
    UnsupportedMediaType,
)
from service.model import Priority, Resources, RetryPolicy

T = TypeVar("T")

JOB_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
JobId = Annotated[str, Meta(pattern=JOB_ID_PATTERN, description="1-128 characters of A-Z a-z 0-9 . _ : -")]
JobType = Annotated[str, Meta(min_length=1, max_length=128)]
DAY = 86_400.0


class ResourceRequirements(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    cpu_units: Annotated[int, Meta(ge=0, le=1_000_000)] = 1
    memory_mb: Annotated[int, Meta(ge=0, le=1 << 40)] = 128


class RetryConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    backoff_multiplier: Annotated[float, Meta(ge=1, le=100)] = 2.0
    initial_delay_seconds: Annotated[float, Meta(ge=0, le=DAY)] = 1.0
    max_delay_seconds: Annotated[float, Meta(ge=0, le=30 * DAY)] = 3600.0
    jitter: Annotated[float, Meta(ge=0, le=1)] = 0.1

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_attempts, self.backoff_multiplier, self.initial_delay_seconds, self.max_delay_seconds, self.jitter
        )


class JobSubmission(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /jobs. Unknown fields are rejected so that a typo never passes silently."""

    type: JobType
    job_id: JobId | None = None
    priority: Priority = Priority.NORMAL
    payload: dict[str, Any] = {}
    resource_requirements: ResourceRequirements = ResourceRequirements()
    depends_on: Annotated[list[JobId], Meta(max_length=1000)] = []
    timeout_seconds: Annotated[float, Meta(gt=0, le=7 * DAY)] | None = None
    retry_config: RetryConfig = RetryConfig()
    run_at: Annotated[datetime, Meta(tz=True)] | None = None


class BatchSubmission(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /jobs/batch: all or nothing; dependencies may point forward inside the batch."""

    jobs: Annotated[list[JobSubmission], Meta(min_length=1, max_length=10_000)]


class KeyRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /keys. The name and scopes are checked by `service.credentials` (one rule for API and CLI)."""

    name: str
    scopes: list[str]
    rate_limits: KeyRates | None = None


class KeyRates(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A key's own rate limits, in the form of TASKQ_RATE_LIMIT_SUBMIT (`100/s`, `6000/m:500`); a limit
    left out is the node's."""

    submit: str | None = None
    requests: str | None = None


class JobTemplate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The job a schedule submits at each tick: a POST /jobs body without `job_id` (each tick's job is
    `<schedule_id>:<tick>`), `depends_on` and `run_at` (the tick is its time)."""

    type: JobType
    priority: Priority = Priority.NORMAL
    payload: dict[str, Any] = {}
    resource_requirements: ResourceRequirements = ResourceRequirements()
    timeout_seconds: Annotated[float, Meta(gt=0, le=7 * DAY)] | None = None
    retry_config: RetryConfig = RetryConfig()

    def submission(self) -> JobSubmission:
        return JobSubmission(
            type=self.type,
            priority=self.priority,
            payload=self.payload,
            resource_requirements=self.resource_requirements,
            timeout_seconds=self.timeout_seconds,
            retry_config=self.retry_config,
        )


# No colon: it separates the schedule from the tick in its jobs' ids, which must stay within 128 characters.
SCHEDULE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"
ScheduleId = Annotated[str, Meta(pattern=SCHEDULE_ID_PATTERN, description="1-100 characters of A-Z a-z 0-9 . _ -")]
Cron = Annotated[str, Meta(min_length=1, max_length=200)]
TimeZone = Annotated[str, Meta(min_length=1, max_length=64)]
Overlap = Literal["skip", "allow"]
CatchUp = Literal["none", "one", "all"]


class ScheduleSubmission(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /schedules."""

    schedule_id: ScheduleId
    cron: Cron
    job: JobTemplate
    timezone: TimeZone = "UTC"
    overlap: Overlap = "allow"
    catch_up: CatchUp = "none"
    paused: bool = False


class SchedulePatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """PATCH /schedules/{id}: the fields given change, the others stay."""

    cron: Cron | msgspec.UnsetType = msgspec.UNSET
    timezone: TimeZone | msgspec.UnsetType = msgspec.UNSET
    job: JobTemplate | msgspec.UnsetType = msgspec.UNSET
    overlap: Overlap | msgspec.UnsetType = msgspec.UNSET
    catch_up: CatchUp | msgspec.UnsetType = msgspec.UNSET
    paused: bool | msgspec.UnsetType = msgspec.UNSET


class TypeControlPatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """PATCH /types/{type}: the fields given change (null lifts a limit), the others stay."""

    paused: bool | msgspec.UnsetType = msgspec.UNSET
    max_running: Annotated[int, Meta(ge=1, le=1000000)] | msgspec.UnsetType | None = msgspec.UNSET
    max_starts_per_second: Annotated[float, Meta(gt=0, le=1000000)] | msgspec.UnsetType | None = msgspec.UNSET


_submission_decoder = msgspec.json.Decoder(JobSubmission)
_schedule_decoder = msgspec.json.Decoder(ScheduleSubmission)
_schedule_patch_decoder = msgspec.json.Decoder(SchedulePatch)
_type_patch_decoder = msgspec.json.Decoder(TypeControlPatch)
_template_decoder = msgspec.json.Decoder(JobTemplate)
_key_decoder = msgspec.json.Decoder(KeyRequest)
_batch_decoder = msgspec.json.Decoder(BatchSubmission)
_canonical = msgspec.json.Encoder(order="sorted")
_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_ENUM_CHOICES = {
    "priority": ", ".join(p.value for p in Priority),
    "job.priority": ", ".join(p.value for p in Priority),
    "overlap": "skip, allow",
    "catch_up": "none, one, all",
}


def require_json(content_type: str | None) -> None:
    """A body is accepted only as `application/json` (or a `+json` type) in UTF-8. Besides saying what
    the API reads, this closes the cross-site path: a browser form can post only form-encoded, multipart
    or text/plain bodies without a CORS preflight, and those are refused here before anything is read."""
    if content_type is None:
        message = "is missing; send the body as application/json"
    else:
        media, _, parameters = content_type.partition(";")
        media = media.strip().lower()
        charset = next(
            (
                v.strip().strip('"').lower()
                for k, _, v in (p.partition("=") for p in parameters.split(";"))
                if k.strip().lower() == "charset"
            ),
            None,
        )
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            message = f"is {media or 'empty'!r}; send the body as application/json"
        elif charset not in (None, "utf-8", "utf8"):
            message = f"names charset {charset!r}; JSON bodies are UTF-8"
        else:
            return
    raise UnsupportedMediaType(f"Content-Type {message}", errors=[{"field": "Content-Type", "message": message}])


def decode_submission(body: bytes) -> JobSubmission:
    return _decode(_submission_decoder, body)


def decode_batch(body: bytes) -> BatchSubmission:
    return _decode(_batch_decoder, body)


def decode_key_request(body: bytes) -> KeyRequest:
    return _decode(_key_decoder, body)


def decode_schedule(body: bytes) -> ScheduleSubmission:
    return _decode(_schedule_decoder, body)


def decode_schedule_patch(body: bytes) -> SchedulePatch:
    return _decode(_schedule_patch_decoder, body)


def decode_type_patch(body: bytes) -> TypeControlPatch:
    return _decode(_type_patch_decoder, body)


def decode_template(text: str | bytes) -> JobTemplate:
    """A schedule's stored job (validated when it was stored)."""
    return _template_decoder.decode(text)


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        field = _lone_surrogate_at(body)
        if field is not None:
            raise InvalidRequest.field(
                field, "contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which is not text"
            ) from None
        raise MalformedRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest.field(
            "body", f"nests objects and arrays too deeply (payloads allow {MAX_PAYLOAD_DEPTH} levels)"
        ) from None


def _lone_surrogate_at(body: bytes) -> str | None:
    """Where a body that msgspec refused holds a lone surrogate, if that was why: such an escape is valid
    JSON syntax (Python's own parser accepts it) but not a Unicode string, so the client hears which field
    holds it instead of a parse error without a place. Only on this error path: the parse costs a second."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None

    def walk(value: object, path: str) -> str | None:
        if isinstance(value, str):
            return path if _SURROGATE.search(value) else None
        items: Iterable[tuple[object, object]]
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            return None
        for key, item in items:
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return path or "body"
            found = walk(item, where)
            if found is not None:
                return found
        return None

    try:
        return walk(document, "")
    except RecursionError:
        return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def validation_error(text: str, prefix: str = "") -> InvalidRequest:
    """Turns msgspec's `Expected int, got str - at $.a.b` into a field name and a rule."""
    match = _AT_PATH.match(text)
    assert match is not None
    message, path = match.group("message"), match.group("path") or ""
    # `$.a.b[0]` -> `a.b.0`; a dict key shows as `[...]`: name the field that holds the dict.
    path = path.split("[...]", 1)[0]
    # `$.jobs[0].type` -> `jobs.0.type` (a batch's job and its field).
    field = path.replace("[", ".").replace("]", "").lstrip(".") if path else ""
    if unknown := _UNKNOWN_FIELD.match(message):
        field = f"{field}.{unknown.group('name')}" if field else unknown.group("name")
        message = "unknown field; check its spelling against the schema"
    elif missing := _MISSING_FIELD.match(message):
        field = f"{field}.{missing.group('name')}" if field else missing.group("name")
        message = "is required"
    elif message.startswith("Invalid enum value") and field in _ENUM_CHOICES:
        message = f"{message}; must be one of: {_ENUM_CHOICES[field]}"
    field = f"{prefix}{field}" if field else (prefix.rstrip(".") or "body")
    return InvalidRequest.field(field, message)


def validate(
    submission: JobSubmission, *, capacity: Resources, known_types: AbstractSet[str], prefix: str = ""
) -> None:
    """Checks beyond the schema; `prefix` (`jobs.3.`) names the job inside a batch."""
    try:
        check(submission, capacity, known_types)
    except InvalidRequest as exc:
        if prefix:
            name_job(exc, prefix)
        raise


def name_job(exc: InvalidRequest, prefix: str) -> None:
    """Names the job of a batch (`jobs.3.`) in a reject's fields and detail."""
    exc.errors = [{**e, "field": prefix + e["field"]} for e in exc.errors]
    exc.detail = f"{prefix}{exc.detail}"


def check(submission: JobSubmission, capacity: Resources, known_types: AbstractSet[str]) -> None:
    """`validate` without naming a batch's job: the batch route calls it per job and names the job
    (`name_job`) only for a reject."""
    if submission.type not in known_types:
        names = ", ".join(sorted(known_types))
        raise UnknownJobType(
            f"type: unknown job type {submission.type!r}; known types: {names}",
            errors=[{"field": "type", "message": f"must be one of: {names}"}],
        )
    needs = submission.resource_requirements
    if needs.cpu_units > capacity.cpu_units or needs.memory_mb > capacity.memory_mb:
        for name, need, have in (
            ("cpu_units", needs.cpu_units, capacity.cpu_units),
            ("memory_mb", needs.memory_mb, capacity.memory_mb),
        ):
            if need > have:
                message = f"needs {need} but this node has {have} in all, so the job could never start"
                raise ResourcesExceedCapacity(
                    f"resource_requirements.{name}: {message}",
                    errors=[{"field": f"resource_requirements.{name}", "message": message}],
                )
    depends_on = submission.depends_on
    if depends_on:
        if submission.job_id is not None and submission.job_id in depends_on:
            raise InvalidRequest.field("depends_on", "a job cannot depend on itself")
        if len(set(depends_on)) != len(depends_on):
            raise InvalidRequest.field("depends_on", "lists a job more than once")
    if submission.payload and (problem := payload_problem(submission.payload)) is not None:
        raise InvalidRequest.field("payload", problem)
    retry = submission.retry_config
    if retry.max_delay_seconds < retry.initial_delay_seconds:
        raise InvalidRequest.field("retry_config.max_delay_seconds", "must be at least initial_delay_seconds")


MAX_PAYLOAD_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_NESTING = f"must not nest objects and arrays deeper than {MAX_PAYLOAD_DEPTH} levels"
_NOT_FINITE = "numbers must be finite (no NaN or Infinity)"
_BEYOND_INT64 = "integers must fit in 64 bits (-2^63 to 2^63-1): the actors pass payloads as msgpack"
_NUL = "must not contain the NUL character (\\u0000): PostgreSQL cannot store it"


def payload_problem(payload: Any) -> str | None:
    """What makes a payload unstorable or unsafe to pass on, if anything. One iterative walk: nesting
    beyond MAX_PAYLOAD_DEPTH (every actor decodes the payload again, recursively), a NaN or an infinity
    (not JSON), an integer beyond 64 bits (msgpack cannot carry it to the worker: the supervisor failed on
    it), a NUL character in a string or key (PostgreSQL rejects it).

    It runs for every job of a batch, so it dispatches on exact types (what a JSON decoder produces) and
    visits each container once; anything else (a subclass, from a caller other than the decoder) takes
    the general `isinstance` checks."""
    if isinstance(payload, dict | list):
        containers: list[tuple[dict[Any, Any] | list[Any], int]] = [(payload, 1)]
    else:
        containers = []
        if (problem := _scalar_problem(payload)) is not None:
            return problem
    while containers:
        container, depth = containers.pop()
        if isinstance(container, dict):
            for key in container:
                if type(key) is str:
                    if "\x00" in key:
                        return _NUL
                elif (problem := _scalar_problem(key)) is not None:
                    return problem
            items: Any = container.values()
        else:
            items = container
        for value in items:
            kind = type(value)
            if kind is str:
                if "\x00" in value:
                    return _NUL
            elif kind is int:
                if not INT64_MIN <= value <= INT64_MAX:
                    return _BEYOND_INT64
            elif kind is float:
                if not math.isfinite(value):
                    return _NOT_FINITE
            elif kind is dict or kind is list or isinstance(value, dict | list):
                if depth + 1 > MAX_PAYLOAD_DEPTH:
                    return _NESTING
                containers.append((value, depth + 1))
            elif value is not None and kind is not bool and (problem := _scalar_problem(value)) is not None:
                return problem
    return None


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else _NOT_FINITE
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else _BEYOND_INT64
    if isinstance(value, str):
        return _NUL if "\x00" in value else None
    return None


def request_hash(submission: JobSubmission, job_id: str) -> bytes:
    """The identity of a submission after defaults are applied: equal bodies hash equal."""
    run_at = submission.run_at
    if submission.job_id != job_id or (run_at is not None and run_at.tzinfo is not UTC):
        # Name the id and state run_at in UTC; most submissions already do both (a batch's jobs get
        # their ids before they are hashed, and `...Z` decodes as UTC), and skip the copy.
        normal = msgspec.structs.replace(
            submission, job_id=job_id, run_at=run_at.astimezone(UTC) if run_at is not None else None
        )
        return hashlib.sha256(_canonical.encode(normal)).digest()
    return hashlib.sha256(_canonical.encode(submission)).digest()


# ------------------------------------------------------------------------------------------------ responses


class AttemptView(msgspec.Struct):
    attempt: int
    started_at: str | None
    finished_at: str | None
    outcome: str | None
    error: str | None
    worker_pid: int | None
    node: str | None = None  # the node whose executor ran it


class ProgressView(msgspec.Struct):
    """The current attempt's last `ctx.progress`: a fraction 0-1, an optional message, when it was said."""

    fraction: float
    message: str | None
    at: str


class JobView(msgspec.Struct):
    job_id: str
    type: str
    priority: str
    status: str
    payload: dict[str, Any]
    resource_requirements: ResourceRequirements
    depends_on: list[str]
    retry_config: RetryConfig
    timeout_seconds: float | None
    run_at: str | None
    next_run_at: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempt_count: int
    error: str | None
    result: Any
    position_in_queue: int | None
    attempts: list[AttemptView]
    cancel_requested: bool = False
    schedule_id: str | None = None  # the schedule whose tick submitted it
    progress: ProgressView | None = None  # the current (or last) attempt's
    heartbeat_at: str | None = None  # the current (or last) attempt's last heartbeat or progress


class JobPage(msgspec.Struct):
    items: list[JobView]
    next_cursor: str | None


class LogLine(msgspec.Struct):
    id: int
    timestamp: str
    attempt: int | None
    level: str
    event: str
    message: str
    data: dict[str, Any] | None


class Accepted(msgspec.Struct):
    """One job of a batch answer: the specification's submit response."""

    job_id: str
    status: str
    created_at: str
    priority: str
    position_in_queue: int | None


class BatchAccepted(msgspec.Struct):
    jobs: list[Accepted]


class NodeView(msgspec.Struct):
    """One executor node of a cluster, as the leader sees it."""

    name: str
    leader: bool  # its scheduler holds the lease
    connected: bool  # its supervisor is linked to the leader
    draining: bool  # it takes no new work
    capacity: ResourceRequirements
    in_use: ResourceRequirements
    running: int  # attempts running there
    last_seen: str  # when the leader last heard from it (ISO 8601)


class Stats(msgspec.Struct):
    capacity: ResourceRequirements  # a cluster's: the sum over its nodes
    resources_in_use: ResourceRequirements
    resources_free: ResourceRequirements
    jobs_by_status: dict[str, int]
    leader: str | None = None  # the node whose scheduler answered (the leader); null when none answers
    nodes: list[NodeView] | None = None  # in a cluster: every executor node


class KeyView(msgspec.Struct):
    """A key as GET /keys lists it: never its secret."""

    key_id: str
    name: str
    scopes: list[str]
    created_at: str
    revoked_at: str | None
    rate_limits: KeyRates | None = None


class CreatedKey(msgspec.Struct):
    """POST /keys: the only answer that ever carries the key itself."""

    key_id: str
    name: str
    scopes: list[str]
    created_at: str
    key: str
    rate_limits: KeyRates | None = None


class Identity(msgspec.Struct):
    """GET /auth/whoami: what the presented key may do, so that a client (the console) offers only the
    actions it is allowed. With keys not required, every scope and no caller."""

    auth_required: bool
    caller: str | None
    scopes: list[str]


class ScheduleView(msgspec.Struct):
    schedule_id: str
    cron: str
    timezone: str
    job: JobTemplate
    overlap: str
    catch_up: str
    paused: bool
    next_fire_times: list[str]  # the next few ticks (none while paused), UTC
    last_fired_at: str | None  # the tick of the last job submitted
    last_job_id: str | None
    checked_through: str  # every tick up to here is decided: fired, skipped for overlap, or missed
    created_at: str
    updated_at: str


class TypeView(msgspec.Struct):
    """A job type with its dispatch controls and its live jobs by status."""

    type: str
    registered: bool  # a handler for it is loaded (jobs of it can be submitted)
    paused: bool
    max_running: int | None
    max_starts_per_second: float | None
    jobs: dict[str, int]  # blocked, pending, scheduled, running
