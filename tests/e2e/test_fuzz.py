"""500 fuzzed requests (random methods, paths, query strings, headers and bodies) against the real
service: not one 5xx, and every error is a problem document.

Seeded, so a failure is reproducible: the failing request is printed with its index, and
`TASKQ_FUZZ_SEED=<n>` replays another sequence."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import httpx

from tests.conftest import Service

REQUESTS = 500
SEED = int(os.environ.get("TASKQ_FUZZ_SEED", "20261204"))

ROUTES = [
    "/jobs",
    "/jobs/batch",
    "/jobs/{id}",
    "/jobs/{id}/logs",
    "/jobs/{id}/explain",
    "/jobs/{id}/cancel",
    "/jobs/{id}/retry",
    "/stats",
    "/dlq",
    "/keys",
    "/keys/{id}",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/nope",
    "/jobs/{id}/{id}",
    "//jobs",
]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "GET", "POST"]
IDS = [
    "job-1",
    "a" * 129,
    "%00",
    "%ff%fe",
    "..",
    "%2e%2e%2f",
    "x%20y",
    "%F0%9F%98%80",
    "%ED%A0%80",  # a UTF-8-encoded lone surrogate
    "1" * 5000,
    "",
    "tq_000000000000_x",
]
QUERY_KEYS = ["limit", "after", "cursor", "status", "type", "priority", "job_id", "token", "x"]
QUERY_VALUES = ["-1", "0", "1", "501", "99999999999999999999", "abc", "%00", "%ff", "", "succeeded", "nope", "1e9"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/problem+json",
    "",
    None,
]
GOOD_JOB: dict[str, Any] = {
    "type": "quick_task",
    "priority": "high",
    "payload": {"duration_seconds": 0},
    "resource_requirements": {"cpu_units": 1, "memory_mb": 16},
    "run_at": "2099-01-01T00:00:00Z",
}
ODD_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**63,
    2**64,
    1e308,
    -1e308,
    "",
    "\u0000",
    "x" * 10_000,
    [],
    {},
    [1, [2, [3]]],
    {"a": {"b": {"c": None}}},
    "2099-13-45T99:99:99Z",
    "critical",
    ["a", "a"],
]


def mutated_job(rng: random.Random) -> Any:
    job: dict[str, Any] = json.loads(json.dumps(GOOD_JOB))
    for _ in range(rng.randint(0, 3)):
        key = rng.choice([*GOOD_JOB, "job_id", "depends_on", "timeout_seconds", "retry_config", "extra", "type"])
        job[key] = rng.choice(ODD_VALUES)
    if rng.random() < 0.2:
        job["resource_requirements"] = {rng.choice(["cpu_units", "memory_mb", "gpus"]): rng.choice(ODD_VALUES)}
    if rng.random() < 0.2:
        job["retry_config"] = {
            rng.choice(["max_attempts", "backoff_multiplier", "initial_delay_seconds", "jitter"]): rng.choice(
                ODD_VALUES
            )
        }
    return job


def body(rng: random.Random) -> bytes | None:
    choice = rng.randrange(9)
    if choice == 0:
        return None
    if choice == 1:
        return json.dumps(mutated_job(rng)).encode()
    if choice == 2:
        return json.dumps({"jobs": [mutated_job(rng) for _ in range(rng.randint(0, 4))]}).encode()
    if choice == 3:
        return json.dumps(rng.choice(ODD_VALUES)).encode()
    if choice == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))  # not even text
    if choice == 5:
        return b'{"type": "quick_task", "job_id": "\\ud800"}'
    if choice == 6:
        return json.dumps({"name": rng.choice(ODD_VALUES), "scopes": rng.choice(ODD_VALUES)}).encode()
    if choice == 7:
        text = json.dumps(mutated_job(rng))
        return text[: rng.randrange(len(text))].encode()  # cut short
    return b"[" * 10_000 + b"]" * 10_000


def fuzzed_request(rng: random.Random) -> tuple[str, str, dict[bytes, bytes], bytes | None]:
    path = rng.choice(ROUTES).replace("{id}", rng.choice(IDS))
    if rng.random() < 0.5:
        pairs = [f"{rng.choice(QUERY_KEYS)}={rng.choice(QUERY_VALUES)}" for _ in range(rng.randint(1, 3))]
        path += "?" + "&".join(pairs)
    headers: dict[str, str] = {}
    content_type = rng.choice(CONTENT_TYPES)
    if content_type is not None:
        headers["content-type"] = content_type
    if rng.random() < 0.3:
        headers["idempotency-key"] = rng.choice(["", "k1", "x" * 10_000, "has space", "caf\u00e9"])
    if rng.random() < 0.2:
        headers["authorization"] = rng.choice(["Bearer", "Bearer x", "Basic abc", "Bearer tq_0_0", ""])
    if rng.random() < 0.1:
        headers["origin"] = rng.choice(["http://evil.example", "null", "http://127.0.0.1:1"])
    # As bytes: a header may hold what is not ASCII (UTF-8 here), as any client can send.
    return rng.choice(METHODS), path, {k.encode(): v.encode() for k, v in headers.items()}, body(rng)


def test_five_hundred_fuzzed_requests_get_no_5xx_and_every_error_is_a_problem(service: Service) -> None:
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=service.base_url, timeout=30.0) as http:
        for index in range(REQUESTS):
            method, path, headers, content = fuzzed_request(rng)
            request = http.build_request(method, path, headers=headers, content=content)
            try:
                response = http.send(request)
            except httpx.HTTPError as exc:  # the server closed the connection instead of answering
                raise AssertionError(f"request {index}: {method} {path} {headers} -> {exc!r}") from exc
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            described = f"request {index} (seed {SEED}): {method} {path[:200]} {headers} -> {response.status_code}"
            assert response.status_code < 500, f"{described}: {response.text[:500]}"
            if response.status_code >= 400 and method != "HEAD":
                assert response.headers.get("content-type", "").startswith("application/problem+json"), (
                    f"{described}: {response.headers.get('content-type')} {response.text[:200]}"
                )
    assert sum(statuses.values()) == REQUESTS
    assert any(400 <= status < 500 for status in statuses)  # the fuzzing reached the validation
    assert service.http.get("/health/ready").status_code == 200  # and the service is still whole
