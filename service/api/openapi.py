"""The OpenAPI document (`GET /openapi.json`), made to tell the truth about this node.

Litestar describes the routes and their response bodies. What it cannot know is added here, in one
place: the request bodies (decoded by msgspec by hand, for problem details that name the field), every
status each route can answer with its `application/problem+json` body (`PROBLEMS`, checked against the
running service by schemathesis in tests/e2e/test_openapi_conformance.py), the constraints the server
enforces on parameters (the job id pattern, closed enums), and what only this node knows: the job types
it runs and its capacity (a job needing more could never start), and whether keys are required.

`allowed_methods` answers OPTIONS from the same routes (Litestar's own OPTIONS answer named only the
first method registered on a path).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

import msgspec

from service.api.auth import OPEN, ROUTES
from service.api.schemas import (
    JOB_ID_PATTERN,
    BatchSubmission,
    JobSubmission,
    KeyRequest,
    SchedulePatch,
    ScheduleSubmission,
    TypeControlPatch,
)
from service.credentials import KEY_ID, NAME_MAX, SCOPES
from service.model import Priority, Resources, Status

PROBLEM = "application/problem+json"

# Besides the success statuses Litestar declares: what each route answers, from the errors its code
# raises (service/errors.py) and the layers in front of it. 401, 403 (a missing scope) and 429 (a rate
# limit) come from the auth layer for every route that needs a scope, 403 also for a cross-site unsafe
# request, 413 and 415 for every route with a body.
PROBLEMS: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/jobs"): {
        400: "the body is not JSON",
        409: "the job_id exists with a different body",
        422: "the body breaks the schema or a rule it cannot express (field named in `errors`)",
        429: "over the submit rate limit, or TASKQ_MAX_LIVE_JOBS jobs are waiting or running",
        503: "draining, or the database is unreachable",
    },
    ("POST", "/jobs/batch"): {
        400: "the body is not JSON",
        409: "a job_id exists with a different body",
        422: "a job breaks the schema or a rule it cannot express, or the batch has a cycle",
        429: "over the submit rate limit, or TASKQ_MAX_LIVE_JOBS would be exceeded",
        503: "draining, or the database is unreachable",
    },
    ("GET", "/jobs"): {400: "a query parameter is not valid", 503: "the database is unreachable"},
    ("GET", "/dlq"): {400: "a query parameter is not valid", 503: "the database is unreachable"},
    ("GET", "/jobs/{job_id}"): {404: "no job has this id", 503: "the database is unreachable"},
    ("GET", "/jobs/{job_id}/logs"): {
        400: "a query parameter is not valid",
        404: "no job has this id",
        503: "the database is unreachable",
    },
    ("GET", "/jobs/{job_id}/explain"): {404: "no job has this id", 503: "the scheduler or database is unreachable"},
    ("PATCH", "/jobs/{job_id}/cancel"): {
        404: "no job has this id",
        409: "the job has finished already",
        503: "the scheduler or database is unreachable",
    },
    ("POST", "/jobs/{job_id}/retry"): {
        404: "no job has this id",
        409: "the job is not failed",
        503: "the scheduler or database is unreachable",
    },
    ("GET", "/stats"): {503: "the database is unreachable (and the scheduler too)"},
    ("POST", "/keys"): {
        400: "the body is not JSON",
        422: "a name, scope or rate limit is not valid",
        503: "the database is unreachable",
    },
    ("GET", "/keys"): {503: "the database is unreachable"},
    ("DELETE", "/keys/{key_id}"): {404: "no key has this id", 503: "the database is unreachable"},
    ("GET", "/jobs/{job_id}/graph"): {404: "no job has this id", 503: "the database is unreachable"},
    ("GET", "/stats/throughput"): {400: "a query parameter is not valid", 503: "the database is unreachable"},
    ("POST", "/schedules"): {
        400: "the body is not JSON",
        409: "a schedule with this schedule_id exists",
        422: "a field is not valid: the cron expression, the timezone, the job (field named in `errors`)",
        503: "the database is unreachable",
    },
    ("GET", "/schedules"): {503: "the database is unreachable"},
    ("GET", "/schedules/{schedule_id}"): {404: "no schedule has this id", 503: "the database is unreachable"},
    ("PATCH", "/schedules/{schedule_id}"): {
        400: "the body is not JSON",
        404: "no schedule has this id",
        422: "a field is not valid (named in `errors`), or the schedule is being changed at this moment",
        503: "the database is unreachable",
    },
    ("DELETE", "/schedules/{schedule_id}"): {404: "no schedule has this id", 503: "the database is unreachable"},
    ("GET", "/types"): {503: "the database is unreachable"},
    ("PATCH", "/types/{job_type}"): {
        400: "the body is not JSON",
        404: "no handler is registered for this job type",
        422: "a control is not valid (named in `errors`)",
        503: "the database is unreachable",
    },
}
WITH_BODY = frozenset(
    {
        ("POST", "/jobs"),
        ("POST", "/jobs/batch"),
        ("POST", "/keys"),
        ("POST", "/schedules"),
        ("PATCH", "/schedules/{schedule_id}"),
        ("PATCH", "/types/{job_type}"),
    }
)
# Routes that answer 503 with a JSON body of their own (not a problem).
OWN_503 = frozenset({("GET", "/health/ready")})
# A replayed submission (same job_id and body) is answered 200 with the existing job.
REPLAYS = {("POST", "/jobs"): "JobView", ("POST", "/jobs/batch"): "BatchAccepted"}

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document; `errors` names each field at fault.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_TITLES = {
    400: "Bad request",
    401: "No valid API key",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    503: "Service unavailable",
}

_SPEC_EXAMPLE = {
    "type": "data_export",
    "priority": "high",
    "payload": {"user_id": 123, "format": "csv"},
    "resource_requirements": {"cpu_units": 1, "memory_mb": 256},
    "retry_config": {"max_attempts": 3, "backoff_multiplier": 2},
}
_BATCH_EXAMPLE = {"jobs": [{"job_id": "a", "type": "data_fetch"}, {"type": "report", "depends_on": ["a"]}]}

_STRING_WITHOUT_NUL = "^[^\\x00]*$"
_CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"  # empty: the first page
_PARAMETERS: dict[str, dict[str, Any]] = {
    "job_id": {"type": "string", "pattern": JOB_ID_PATTERN},
    "key_id": {"type": "string", "pattern": KEY_ID.pattern},
    "status": {"type": "string", "enum": [s.value for s in Status]},
    "priority": {"type": "string", "enum": [p.value for p in Priority]},
    "type": {"type": "string", "pattern": _STRING_WITHOUT_NUL},
    "cursor": {"type": "string", "pattern": _CURSOR_PATTERN, "description": "next_cursor of the previous page"},
    # Litestar writes le=2**63-1 as a float, which rounds up past the largest seq.
    "after": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "default": 0},
}
_TEMPLATE_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


def document(
    base: dict[str, Any], *, job_types: Iterable[str], capacity: Resources, keys_required: bool
) -> dict[str, Any]:
    """Litestar's document for this app, completed (see the module's docstring)."""
    doc = copy.deepcopy(base)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    (single, batch, key, schedule, schedule_patch, type_patch), components = msgspec.json.schema_components(
        [JobSubmission, BatchSubmission, KeyRequest, ScheduleSubmission, SchedulePatch, TypeControlPatch],
        ref_template="#/components/schemas/{name}",
    )
    schemas.update(components)
    schemas["Problem"] = _PROBLEM_SCHEMA
    _tighten_submission(schemas["JobSubmission"], sorted(job_types), capacity)
    _tighten_key_request(schemas["KeyRequest"])
    if keys_required:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key: tq_<key id>_<secret>"}
        }
    bodies = {
        "/jobs": {"schema": single, "example": _SPEC_EXAMPLE},
        "/jobs/batch": {"schema": batch, "example": _BATCH_EXAMPLE},
        "/keys": {"schema": key, "example": {"name": "ci", "scopes": ["submit", "read"]}},
        "/schedules": {
            "schema": schedule,
            "example": {"schedule_id": "nightly", "cron": "0 3 * * *", "job": {"type": "report"}},
        },
        "/schedules/{schedule_id}": {"schema": schedule_patch, "example": {"paused": True}},
        "/types/{job_type}": {"schema": type_patch, "example": {"max_running": 4}},
    }
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            route = (method.upper(), path)
            if route in WITH_BODY:
                operation["requestBody"] = {"required": True, "content": {"application/json": bodies[path]}}
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "job_type" and parameter.get("in") == "path":
                    # Only a registered type has controls: the node's closed list.
                    parameter["schema"] = {"type": "string", "enum": sorted(job_types)}
                    continue
                if (schema := _PARAMETERS.get(parameter["name"])) is not None:
                    parameter["schema"] = {**parameter.get("schema", {}), **schema}
                    parameter["schema"].pop("oneOf", None)
            _responses(operation, route, keys_required)
    return doc


def _tighten_submission(submission: dict[str, Any], job_types: list[str], capacity: Resources) -> None:
    """What this node accepts beyond the Structs' own constraints: only its job types, and no more than
    its capacity (a job that needs more could never start, and is refused)."""
    properties = submission["properties"]
    properties["type"] = {**properties["type"], "enum": job_types}
    properties["resource_requirements"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "cpu_units": {"type": "integer", "minimum": 0, "maximum": capacity.cpu_units, "default": 1},
            "memory_mb": {"type": "integer", "minimum": 0, "maximum": capacity.memory_mb, "default": 128},
        },
    }


def _tighten_key_request(request: dict[str, Any]) -> None:
    """The name and scope rules of `service.credentials` (the API checks them by hand)."""
    properties = request["properties"]
    properties["name"] = {"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": _STRING_WITHOUT_NUL}
    properties["scopes"] = {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(SCOPES)}}


def _responses(operation: dict[str, Any], route: tuple[str, str], keys_required: bool) -> None:
    responses: dict[str, Any] = operation["responses"]
    for declared in [s for s in responses if s.startswith("4") or (s == "503" and route not in OWN_503)]:
        del responses[declared]  # Litestar's own error schema: every error here is a problem document
    if (replay := REPLAYS.get(route)) is not None:
        responses["200"] = {
            "description": "the same job_id and body again: the existing job(s)",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{replay}"}}},
        }
    if route in OWN_503:
        responses["503"] = {
            "description": "not ready: a check failed",
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": {}}}},
        }
    problems = dict(PROBLEMS.get(route, {}))
    template = _TEMPLATE_PARAMETER.sub(r"{\1}", route[1])
    scope = ROUTES.get((route[0], template), OPEN)
    if scope is not OPEN:
        problems.setdefault(429, "over the rate limit")
        if keys_required:
            operation["security"] = [{"bearer": []}]
            problems[401] = "no API key, or not a valid one"
            problems[403] = f"the key lacks the {scope!r} scope"
    if route[0] not in ("GET", "HEAD", "OPTIONS"):
        problems.setdefault(403, "a browser request from an origin that is not allowed")
    if route in WITH_BODY:
        problems[413] = "the body is larger than TASKQ_MAX_BODY_BYTES"
        problems[415] = "the body is not sent as application/json"
    for status, description in sorted(problems.items()):
        response: dict[str, Any] = {
            "description": f"{_TITLES[status]}: {description}",
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
        responses[str(status)] = response


# --------------------------------------------------------------------------------------------- OPTIONS


def allowed_methods(doc: dict[str, Any], path: str) -> list[str] | None:
    """The methods the route of a request path allows (OPTIONS included), or None when no documented
    route has that path. A literal segment wins over a parameter (`/jobs/batch` over `/jobs/{job_id}`)."""
    parts = path.strip("/").split("/")
    best: tuple[int, list[str]] | None = None
    for template, operations in doc.get("paths", {}).items():
        pieces = template.strip("/").split("/")
        if len(pieces) != len(parts):
            continue
        if all(t == p or (t.startswith("{") and p) for t, p in zip(pieces, parts, strict=True)):
            literal = sum(not t.startswith("{") for t in pieces)
            if best is None or literal > best[0]:
                best = (literal, sorted({m.upper() for m in operations} | {"OPTIONS"}))
    return None if best is None else best[1]
