"""POST /jobs bodies: decoding with defaults, per-field errors, the checks of `validate`, and `request_hash`."""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from service import handlers
from service.api.schemas import (
    JOB_ID_PATTERN,
    JobSubmission,
    decode_batch,
    decode_submission,
    payload_problem,
    request_hash,
    validate,
)
from service.api.submit import new_job_id, new_job_ids
from service.errors import (
    InvalidRequest,
    MalformedRequest,
    ResourcesExceedCapacity,
    UnknownJobType,
)
from service.model import Priority, Resources

CAPACITY = Resources(cpu_units=8, memory_mb=4096)
KNOWN_TYPES = ["echo", "sleep", "fail"]


class IntSubclass(int):
    """Not what a JSON decoder produces: takes the general checks of `payload_problem`."""


def body(**fields: Any) -> bytes:
    return json.dumps({"type": "echo", **fields}).encode()


def submission(**fields: Any) -> JobSubmission:
    return decode_submission(body(**fields))


def check(sub: JobSubmission) -> None:
    validate(sub, capacity=CAPACITY, known_types=KNOWN_TYPES)


# ----------------------------------------------------------------------------------------------- decoding


def test_a_minimal_submission_decodes_with_every_default() -> None:
    sub = decode_submission(b'{"type": "echo"}')

    assert sub.type == "echo"
    assert sub.job_id is None
    assert sub.priority is Priority.NORMAL
    assert sub.payload == {}
    assert (sub.resource_requirements.cpu_units, sub.resource_requirements.memory_mb) == (1, 128)
    assert sub.depends_on == []
    assert sub.timeout_seconds is None
    assert sub.run_at is None
    retry = sub.retry_config
    assert (retry.max_attempts, retry.backoff_multiplier, retry.initial_delay_seconds) == (3, 2.0, 1.0)
    assert (retry.max_delay_seconds, retry.jitter) == (3600.0, 0.1)


def test_a_full_submission_decodes_every_field() -> None:
    sub = submission(
        job_id="report-2026.11:a_1",
        priority="critical",
        payload={"n": 1, "nested": {"xs": [1.5, None, "s"]}},
        resource_requirements={"cpu_units": 2, "memory_mb": 256},
        depends_on=["a", "b"],
        timeout_seconds=30,
        retry_config={
            "max_attempts": 5,
            "backoff_multiplier": 3,
            "initial_delay_seconds": 0.5,
            "max_delay_seconds": 60,
            "jitter": 0,
        },
        run_at="2030-01-02T03:04:05+00:00",
    )
    check(sub)

    assert sub.job_id == "report-2026.11:a_1"
    assert sub.priority is Priority.CRITICAL
    assert sub.payload == {"n": 1, "nested": {"xs": [1.5, None, "s"]}}
    assert (sub.resource_requirements.cpu_units, sub.resource_requirements.memory_mb) == (2, 256)
    assert sub.depends_on == ["a", "b"]
    assert sub.timeout_seconds == 30.0
    assert sub.retry_config.policy().max_attempts == 5
    assert sub.retry_config.backoff_multiplier == 3.0
    assert sub.run_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        pytest.param(body(depend_on=["a"]), "depend_on", "unknown field", id="unknown-top-level-field"),
        pytest.param(
            body(resource_requirements={"cpu": 2}), "resource_requirements.cpu", "unknown field", id="unknown-nested"
        ),
        pytest.param(
            body(resource_requirements={"cpu_units": "2"}),
            "resource_requirements.cpu_units",
            "int",
            id="cpu-units-string",
        ),
        pytest.param(
            body(resource_requirements={"cpu_units": True}),
            "resource_requirements.cpu_units",
            "int",
            id="cpu-units-boolean",
        ),
        pytest.param(
            body(resource_requirements={"memory_mb": -1}), "resource_requirements.memory_mb", ">= 0", id="negative-mem"
        ),
        pytest.param(body(priority="urgent"), "priority", "critical, high, normal, low", id="unknown-priority"),
        pytest.param(body(job_id="has space"), "job_id", "", id="job-id-with-space"),
        pytest.param(body(job_id="a" * 129), "job_id", "", id="job-id-129-characters"),
        pytest.param(b'{"type": "echo", "timeout_seconds": 1e999}', "timeout_seconds", "", id="timeout-1e999"),
        pytest.param(body(timeout_seconds=0), "timeout_seconds", "> 0", id="timeout-zero"),
        pytest.param(body(run_at="2030-01-02T03:04:05"), "run_at", "timezone", id="run-at-without-timezone"),
        pytest.param(b'{"payload": {}}', "type", "required", id="missing-type"),
        pytest.param(body(type=""), "type", "", id="empty-type"),
        pytest.param(body(retry_config={"max_attempts": 0}), "retry_config.max_attempts", ">= 1", id="0-attempts"),
        pytest.param(body(retry_config={"jitter": 1.5}), "retry_config.jitter", "<= 1", id="jitter-above-1"),
        pytest.param(body(depends_on=["ok", "not ok"]), "depends_on.1", "", id="bad-dependency-id-names-its-index"),
        pytest.param(b"[]", "body", "object", id="body-not-an-object"),
    ],
)
def test_an_invalid_body_raises_invalid_request_naming_the_field(raw: bytes, field: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        decode_submission(raw)

    error = raised.value
    assert type(error) is InvalidRequest
    assert len(error.errors) == 1
    assert error.errors[0]["field"] == field
    assert says in error.errors[0]["message"]
    assert error.detail.startswith(f"{field}: ")


def test_an_exact_129_character_job_id_is_rejected_but_128_is_accepted() -> None:
    assert submission(job_id="a" * 128).job_id == "a" * 128
    with pytest.raises(InvalidRequest):
        submission(job_id="a" * 129)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"type": "echo", "payload": {"x": NaN}}', id="nan-literal"),
        pytest.param(b'{"type": "echo", "payload": {"x": Infinity}}', id="infinity-literal"),
        pytest.param(b'{"type": "echo",', id="truncated"),
        pytest.param(b"", id="empty"),
        pytest.param(b"type=echo", id="form-encoded"),
    ],
)
def test_a_body_that_is_not_json_raises_malformed_request(raw: bytes) -> None:
    with pytest.raises(MalformedRequest) as raised:
        decode_submission(raw)

    assert "not valid JSON" in raised.value.detail


# ----------------------------------------------------------------------------------------------- validate


def test_a_good_submission_passes_validation() -> None:
    check(submission(job_id="a", depends_on=["b", "c"], resource_requirements={"cpu_units": 8, "memory_mb": 4096}))


def test_an_unknown_type_is_rejected_listing_the_known_types() -> None:
    with pytest.raises(UnknownJobType) as raised:
        check(submission(type="ecoh"))

    assert raised.value.errors[0]["field"] == "type"
    for known in KNOWN_TYPES:
        assert known in raised.value.errors[0]["message"]
        assert known in raised.value.detail
    assert "'ecoh'" in raised.value.detail


@pytest.mark.parametrize(
    ("requirements", "field"),
    [
        ({"cpu_units": 9}, "resource_requirements.cpu_units"),
        ({"memory_mb": 4097}, "resource_requirements.memory_mb"),
    ],
)
def test_a_requirement_above_the_node_capacity_is_rejected_naming_it(requirements: dict[str, int], field: str) -> None:
    with pytest.raises(ResourcesExceedCapacity) as raised:
        check(submission(resource_requirements=requirements))

    assert raised.value.errors[0]["field"] == field
    assert "could never start" in raised.value.errors[0]["message"]


def test_a_job_that_depends_on_itself_is_rejected() -> None:
    with pytest.raises(InvalidRequest) as raised:
        check(submission(job_id="a", depends_on=["b", "a"]))

    assert raised.value.errors[0] == {"field": "depends_on", "message": "a job cannot depend on itself"}


def test_a_dependency_listed_twice_is_rejected() -> None:
    with pytest.raises(InvalidRequest) as raised:
        check(submission(depends_on=["b", "c", "b"]))

    assert raised.value.errors[0] == {"field": "depends_on", "message": "lists a job more than once"}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"x": float("inf")}, id="inf"),
        pytest.param({"x": float("-inf")}, id="minus-inf"),
        pytest.param({"x": float("nan")}, id="nan"),
        pytest.param({"a": {"b": [1, 2.5, {"c": float("inf")}]}}, id="nested-in-list-and-dict"),
    ],
)
def test_a_non_finite_number_in_the_payload_is_rejected(payload: dict[str, Any]) -> None:
    sub = msgspec.convert({"type": "echo", "payload": payload}, JobSubmission)

    with pytest.raises(InvalidRequest) as raised:
        check(sub)

    assert raised.value.errors[0]["field"] == "payload"


def test_a_non_finite_number_replaced_into_a_decoded_payload_is_rejected() -> None:
    sub = msgspec.structs.replace(submission(payload={"x": 1.0}), payload={"x": float("nan")})

    with pytest.raises(InvalidRequest) as raised:
        check(sub)

    assert raised.value.errors[0]["field"] == "payload"


def test_a_max_delay_below_the_initial_delay_is_rejected() -> None:
    sub = submission(retry_config={"initial_delay_seconds": 10, "max_delay_seconds": 5})

    with pytest.raises(InvalidRequest) as raised:
        check(sub)

    assert raised.value.errors[0]["field"] == "retry_config.max_delay_seconds"


# ----------------------------------------------------------------------------------------------- request_hash


def test_request_hash_is_equal_with_and_without_explicitly_spelled_defaults() -> None:
    bare = submission(payload={"n": 1})
    spelled = submission(
        payload={"n": 1},
        priority="normal",
        resource_requirements={"cpu_units": 1, "memory_mb": 128},
        depends_on=[],
        timeout_seconds=None,
        retry_config={
            "max_attempts": 3,
            "backoff_multiplier": 2,
            "initial_delay_seconds": 1,
            "max_delay_seconds": 3600,
            "jitter": 0.1,
        },
        run_at=None,
    )

    assert request_hash(bare, "job-1") == request_hash(spelled, "job-1")


def test_request_hash_is_equal_for_payload_keys_in_a_different_order() -> None:
    first = decode_submission(b'{"type": "echo", "payload": {"a": 1, "b": {"c": 2, "d": [3, {"e": 4, "f": 5}]}}}')
    second = decode_submission(b'{"payload": {"b": {"d": [3, {"f": 5, "e": 4}], "c": 2}, "a": 1}, "type": "echo"}')

    assert request_hash(first, "job-1") == request_hash(second, "job-1")


@pytest.mark.parametrize(
    ("other", "job_id"),
    [
        pytest.param({"payload": {"n": 2}}, "job-1", id="different-payload-value"),
        pytest.param({"payload": {"m": 1}}, "job-1", id="different-payload-key"),
        pytest.param({"payload": {"n": 1}, "priority": "high"}, "job-1", id="different-priority"),
        pytest.param({"payload": {"n": 1}}, "job-2", id="different-job-id"),
    ],
)
def test_request_hash_differs_when_the_submission_differs(other: dict[str, Any], job_id: str) -> None:
    assert request_hash(submission(payload={"n": 1}), "job-1") != request_hash(submission(**other), job_id)


def test_server_made_ids_are_unique_and_match_the_job_id_pattern() -> None:
    ids = [*new_job_ids(5000), new_job_id(), *new_job_ids(1)]
    assert new_job_ids(0) == []
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"job_[0-9a-f]{32}", i) and re.match(JOB_ID_PATTERN, i) for i in ids)


# ----------------------------------------------------------------------------------------------- batches


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(b'{"jobs": [{"type": "echo"}, {"priority": "high"}]}', "jobs.1.type", id="missing-field"),
        pytest.param(b'{"jobs": [{"type": "echo"}, {"type": "echo", "x": 1}]}', "jobs.1.x", id="unknown-field"),
        pytest.param(b'{"jobs": [{"type": "echo", "payload": {"n": 1e999}}]}', "jobs.0.payload", id="nested-value"),
        pytest.param(
            b'{"jobs": [{"type": "echo", "depends_on": ["ok", "not ok"]}]}', "jobs.0.depends_on.1", id="list-item"
        ),
        pytest.param(b'{"jobs": []}', "jobs", id="empty"),
    ],
)
def test_a_batch_decode_error_names_the_job_and_its_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        decode_batch(raw)

    assert raised.value.errors[0]["field"] == field
    assert raised.value.detail.startswith(f"{field}: ")


def test_validate_accepts_the_registry_as_a_set_and_lists_it_sorted() -> None:
    with pytest.raises(UnknownJobType) as raised:
        validate(submission(type="ecoh"), capacity=CAPACITY, known_types=frozenset(KNOWN_TYPES))

    assert raised.value.errors[0]["message"] == "must be one of: echo, fail, sleep"


def test_a_batch_prefix_names_the_job_in_every_field_of_a_reject() -> None:
    with pytest.raises(InvalidRequest) as raised:
        validate(submission(depends_on=["a", "a"]), capacity=CAPACITY, known_types=KNOWN_TYPES, prefix="jobs.3.")

    assert raised.value.errors == [{"field": "jobs.3.depends_on", "message": "lists a job more than once"}]
    assert raised.value.detail.startswith("jobs.3.depends_on: ")


def test_known_types_is_a_set_that_follows_the_registry() -> None:
    handlers.load()
    known = handlers.known_types()
    assert isinstance(known, frozenset)
    assert "quick_task" in known
    assert handlers.known_types() is known  # not rebuilt per call

    @handlers.job_type("test_schemas_late_type")
    async def late(ctx: handlers.JobContext, payload: dict[str, Any]) -> None:
        return None

    assert handlers.known_types() == known | {"test_schemas_late_type"}


# ----------------------------------------------------------------------------------------------- payloads


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        pytest.param({}, None, id="empty"),
        pytest.param({"a": [1, -(2**63), 2**63 - 1, 1.5, "s", None, True, {"b": []}]}, None, id="every-json-type"),
        pytest.param({"a": [2**63]}, "64 bits", id="int-beyond-64-bits"),
        pytest.param({"a": {"b\x00": 1}}, "NUL", id="nul-in-a-nested-key"),
        pytest.param({"a": ["ok", "b\x00"]}, "NUL", id="nul-in-a-list"),
        pytest.param({"a": [[float("nan")]]}, "finite", id="nan-in-a-nested-list"),
        pytest.param(OrderedDict(a="x"), None, id="dict-subclass"),
        pytest.param(OrderedDict(a="x\x00"), "NUL", id="nul-in-a-dict-subclass"),
        pytest.param(OrderedDict(a=[IntSubclass(2**64)]), "64 bits", id="int-subclass-beyond-64-bits"),
    ],
)
def test_payload_problem_finds_the_rule_a_payload_breaks(payload: dict[str, Any], problem: str | None) -> None:
    found = payload_problem(payload)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(("depth", "rejected"), [(64, False), (65, True)])
def test_payload_nesting_is_limited_to_64_levels_counting_empty_containers(depth: int, rejected: bool) -> None:
    for leaf in ({}, [], {"x": 1}):
        payload: Any = leaf
        for _ in range(depth - 1):
            payload = {"a": payload}
        assert (payload_problem(payload) is not None) is rejected


def test_request_hash_is_the_canonical_digest_of_the_submission_with_its_id_and_utc_run_at() -> None:
    for sub in (
        submission(payload={"b": 1, "a": 2}),
        submission(job_id="given", run_at="2030-01-02T03:04:05Z"),
        submission(run_at="2030-01-02T05:04:05+02:00"),
    ):
        run_at = sub.run_at.astimezone(UTC) if sub.run_at is not None else None
        normal = msgspec.structs.replace(sub, job_id="job-1", run_at=run_at)
        expected = hashlib.sha256(msgspec.json.Encoder(order="sorted").encode(normal)).digest()
        assert request_hash(sub, "job-1") == expected
        assert request_hash(msgspec.structs.replace(sub, job_id="job-1"), "job-1") == expected
    utc = submission(run_at="2030-01-02T03:04:05Z")
    assert request_hash(utc, "j") == request_hash(submission(run_at="2030-01-02T05:04:05+02:00"), "j")
