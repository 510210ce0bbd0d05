"""What the API knows of a registered job type beyond its name (it imports the handler registry to check
types): the defaults its `@job_type(...)` declares, applied to the fields a submission leaves out, and the
payload type its handler is annotated with, checked at submit so that a payload that does not fit is a
422 naming the field (`payload.to`) instead of an attempt that fails in the worker.

Defaults are applied to the request body as JSON, before it is decoded again: the result is exactly the
submission a client would have sent with those fields, validated by the same schema, hashed the same
way for idempotency. A submission's own fields win; inside `retry_config` and `resource_requirements`
they win field by field. Only submissions of a type with defaults pay for the second decode.
"""

from __future__ import annotations

from typing import Any

import msgspec

from service import handlers
from service.api.schemas import BatchSubmission, JobSubmission, decode_batch, decode_submission, validation_error
from service.errors import InvalidRequest

_document = msgspec.json.Decoder(dict[str, Any])
_encode = msgspec.json.Encoder().encode


def _defaults_of(type_name: object) -> dict[str, Any] | None:
    registered = handlers.spec(type_name) if isinstance(type_name, str) else None
    return registered.defaults if registered is not None and registered.defaults else None


def merged(job: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A job's JSON object with the type's defaults in the fields it left out (or gave as null)."""
    out = dict(job)
    for field, value in defaults.items():
        given = out.get(field)
        if given is None:
            out[field] = value
        elif isinstance(value, dict) and isinstance(given, dict):
            out[field] = {**value, **given}
    return out


def with_defaults(body: bytes, submission: JobSubmission) -> JobSubmission:
    """POST /jobs: the submission with its type's defaults (`body` is the request it was decoded from)."""
    defaults = _defaults_of(submission.type)
    if defaults is None:
        return submission
    return decode_submission(_encode(merged(_document.decode(body), defaults)))


def batch_with_defaults(body: bytes, batch: BatchSubmission) -> BatchSubmission:
    """POST /jobs/batch: each job with its type's defaults."""
    if not any(_defaults_of(job.type) is not None for job in batch.jobs):
        return batch
    document = _document.decode(body)
    jobs = [merged(job, defaults) if (defaults := _defaults_of(job.get("type"))) else job for job in document["jobs"]]
    return decode_batch(_encode({**document, "jobs": jobs}))


def check_payload(submission: JobSubmission, prefix: str = "") -> None:
    """A typed handler's payload must decode as its annotated type: else 422 naming the field."""
    registered = handlers.spec(submission.type)
    if registered is None or registered.payload_type is None:
        return
    try:
        registered.check_payload(submission.payload)
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc), prefix=f"{prefix}payload.") from None


def declared_defaults_problem() -> str | None:
    """A registered type whose declared defaults this service would refuse (a `retry` beyond its limits,
    a timeout of 30 days): `taskq serve` stops at start with this line rather than 422 every submission."""
    for name in sorted(handlers.known_types()):
        defaults = _defaults_of(name)
        if defaults is None:
            continue
        try:
            decode_submission(_encode({"type": name, **defaults}))
        except InvalidRequest as exc:
            return f"job type {name!r} declares a default the service refuses: {exc.detail}"
    return None
