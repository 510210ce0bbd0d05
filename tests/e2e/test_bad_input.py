"""Bad input gets a clear 4xx problem document naming the field and the rule; never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Service

BIG = "x" * (1024 * 1024 + 10)
DEEP_BODY = b'{"type": "send_email", "payload": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
DEEP_65: dict[str, Any] = {"leaf": 1}
for _ in range(64):
    DEEP_65 = {"a": DEEP_65}

CASES: list[tuple[str, Any, int, str]] = [
    # (name, body (bytes/str sent raw, dict as JSON), status, field named in errors or detail)
    ("malformed json", b'{"type": "send_email",', 400, ""),
    ("nan literal", b'{"type": "send_email", "timeout_seconds": NaN}', 400, ""),
    ("not an object", [1, 2], 422, "body"),
    ("missing type", {"priority": "high"}, 422, "type"),
    ("unknown field typo", {"type": "send_email", "depend_on": ["a"]}, 422, "depend_on"),
    ("unknown nested field", {"type": "send_email", "resource_requirements": {"cpus": 1}}, 422, "cpus"),
    ("unknown priority", {"type": "send_email", "priority": "urgent"}, 422, "priority"),
    ("unknown type", {"type": "mine_bitcoin"}, 422, "type"),
    ("string cpu", {"type": "send_email", "resource_requirements": {"cpu_units": "2"}}, 422, "cpu_units"),
    ("boolean cpu", {"type": "send_email", "resource_requirements": {"cpu_units": True}}, 422, "cpu_units"),
    ("negative memory", {"type": "send_email", "resource_requirements": {"memory_mb": -1}}, 422, "memory_mb"),
    ("cpu above capacity", {"type": "send_email", "resource_requirements": {"cpu_units": 9}}, 422, "cpu_units"),
    ("memory above capacity", {"type": "send_email", "resource_requirements": {"memory_mb": 4097}}, 422, "memory_mb"),
    ("infinite timeout", b'{"type": "send_email", "timeout_seconds": 1e999}', 422, "timeout_seconds"),
    ("zero timeout", {"type": "send_email", "timeout_seconds": 0}, 422, "timeout_seconds"),
    ("zero attempts", {"type": "send_email", "retry_config": {"max_attempts": 0}}, 422, "max_attempts"),
    ("jitter above one", {"type": "send_email", "retry_config": {"jitter": 2}}, 422, "jitter"),
    ("bad job id", {"type": "send_email", "job_id": "has space"}, 422, "job_id"),
    ("long job id", {"type": "send_email", "job_id": "a" * 129}, 422, "job_id"),
    ("unknown dependency", {"type": "send_email", "depends_on": ["ghost_job"]}, 422, "depends_on"),
    ("self dependency", {"type": "send_email", "job_id": "me", "depends_on": ["me"]}, 422, "depends_on"),
    ("naive run_at", {"type": "send_email", "run_at": "2030-01-01T00:00:00"}, 422, "run_at"),
    ("payload not object", {"type": "send_email", "payload": [1]}, 422, "payload"),
    ("NUL in a payload value", {"type": "send_email", "payload": {"to": "a\u0000b"}}, 422, "payload"),
    ("NUL in a payload key", {"type": "send_email", "payload": {"x": [{"k\u0000": 1}]}}, 422, "payload"),
    ("NUL in the type", {"type": "send\u0000email"}, 422, "type"),
    ("payload 65 levels deep", {"type": "send_email", "payload": DEEP_65}, 422, "payload"),
    ("integer beyond 64 bits", {"type": "send_email", "payload": {"n": 2**64}}, 422, "payload"),
    (
        "body 5000 levels deep",
        b'{"type": "send_email", "payload": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
        422,
        "body",
    ),
    ("oversized body", {"type": "send_email", "payload": {"blob": BIG}}, 413, ""),
    ("lone surrogate in the job id", b'{"type": "send_email", "job_id": "a\\ud800"}', 422, "job_id"),
    (
        "lone surrogate in a payload",
        b'{"type": "send_email", "payload": {"to": ["x", "\\udc00"]}}',
        422,
        "payload.to.1",
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_submission_is_rejected_with_a_problem_naming_the_field(
    shared_service: Service, name: str, body: Any, status: int, field: str
) -> None:
    service = shared_service
    if isinstance(body, bytes):
        response = service.http.post("/jobs", content=body, headers={"content-type": "application/json"})
    else:
        response = service.http.post("/jobs", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem["detail"]
    assert "Traceback" not in response.text
    if field:
        assert any(field in error["field"] for error in problem["errors"]), problem
    if name == "unknown type":
        assert "send_email" in problem["detail"]  # lists the known types
    assert service.http.get("/jobs").json()["items"] == []  # nothing was created


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"priority": "urgent"}, "priority"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 501}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"type": "a\u0000b"}, "type"),
    ],
)
def test_bad_list_query_is_a_4xx(shared_service: Service, params: dict[str, Any], field: str) -> None:
    service = shared_service
    response = service.http.get("/jobs", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text


@pytest.mark.parametrize(
    ("params", "field"),
    [({"type": "a\u0000b"}, "type"), ({"cursor": "not-a-cursor"}, "cursor"), ({"limit": 0}, "limit")],
)
def test_bad_dlq_query_is_a_4xx(shared_service: Service, params: dict[str, Any], field: str) -> None:
    response = shared_service.http.get("/dlq", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text


@pytest.mark.parametrize("size", [2, 70], ids=["insert path", "copy path"])
def test_a_nul_character_in_a_batch_is_a_422_naming_the_job(shared_service: Service, size: int) -> None:
    jobs: list[dict[str, Any]] = [{"type": "quick_task", "run_at": "2099-01-01T00:00:00Z"} for _ in range(size)]
    jobs[1] = {**jobs[1], "payload": {"note": "a\u0000b"}}
    response = shared_service.http.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["jobs.1.payload"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/{}"),
        ("GET", "/jobs/{}/logs"),
        ("GET", "/jobs/{}/explain"),
        ("PATCH", "/jobs/{}/cancel"),
        ("POST", "/jobs/{}/retry"),
    ],
)
@pytest.mark.parametrize("bad_id", ["a%00b", "has%20space", "x" * 129])
def test_an_id_no_job_can_have_is_a_404_on_every_job_route(
    shared_service: Service, method: str, path: str, bad_id: str
) -> None:
    response = shared_service.http.request(method, path.format(bad_id))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_log_cursor_beyond_64_bits_is_a_400(shared_service: Service) -> None:
    response = shared_service.http.get("/jobs/some-job/logs", params={"after": 2**64})
    assert response.status_code == 400, response.text
    assert "after" in response.text


@pytest.mark.parametrize("key", ["has space", "k" * 129, "é"], ids=["space", "129-characters", "non-ascii"])
def test_an_idempotency_key_no_job_id_can_have_is_a_422_naming_the_header(shared_service: Service, key: str) -> None:
    response = shared_service.http.post("/jobs", json={"type": "quick_task"}, headers={"Idempotency-Key": key.encode()})
    assert response.status_code == 422, response.text  # was a 500: the key skipped the job_id check
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["Idempotency-Key"]
    assert shared_service.http.get("/jobs").json()["items"] == []


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"run_at": "2099-01-01T00:00:00Z"}, "jobs.1.type"),
        ({"type": "quick_task", "typo": 1}, "jobs.1.typo"),
        ({"type": "quick_task", "priority": "urgent"}, "jobs.1.priority"),
        ({"type": "quick_task", "resource_requirements": {"cpu_units": "2"}}, "jobs.1.resource_requirements.cpu_units"),
    ],
)
def test_a_batch_job_the_decoder_rejects_is_named_with_its_index_and_field(
    shared_service: Service, job: dict[str, Any], field: str
) -> None:
    jobs = [{"type": "quick_task", "run_at": "2099-01-01T00:00:00Z"}, job]
    response = shared_service.http.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]  # was `jobs.1type` and the like
    assert response.json()["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
def test_a_streamed_body_over_the_limit_is_a_413_without_a_content_length(shared_service: Service, path: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"type": "quick_task", "payload": {"blob": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}}'

    response = shared_service.http.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == "request body is too large"
    assert shared_service.http.get("/jobs").json()["items"] == []


SAME_ANSWER_CASES: list[tuple[str, Any, dict[str, str]]] = [
    # (path, body, headers): answered in front of Litestar on `path`, by Litestar's handler on `path/`
    *[("/jobs", body, {}) for _, body, _, _ in CASES],
    ("/jobs", {"type": "quick_task", "job_id": "a"}, {"Idempotency-Key": "b"}),
    ("/jobs", {"type": "quick_task"}, {"Idempotency-Key": "has space"}),
    ("/jobs/batch", b'{"jobs": [', {}),
    ("/jobs", b'{"type": "quick_task", "job_id": "\\ud800"}', {}),
    ("/jobs", b'{"type": "quick_task"}', {"content-type": "text/plain"}),
    ("/jobs/batch", b'{"jobs": [{"type": "quick_task"}]}', {"content-type": "application/x-www-form-urlencoded"}),
    ("/jobs/batch", {"jobs": []}, {}),
    ("/jobs/batch", {"jobs": [{"type": "quick_task"}, {"type": "nope"}]}, {}),
    ("/jobs/batch", {"jobs": [{"type": "quick_task", "job_id": "d"}, {"type": "quick_task", "job_id": "d"}]}, {}),
    (
        "/jobs/batch",
        {
            "jobs": [
                {"type": "quick_task", "job_id": "c1", "depends_on": ["c2"]},
                {"type": "quick_task", "job_id": "c2", "depends_on": ["c1"]},
            ]
        },
        {},
    ),
    ("/jobs/batch", {"jobs": [{"type": "quick_task", "depends_on": ["ghost"]}]}, {}),
    ("/jobs/batch", {"jobs": [{"type": "quick_task", "payload": {"blob": BIG}}]}, {}),
]


@pytest.mark.parametrize(("path", "body", "headers"), SAME_ANSWER_CASES)
def test_the_submit_fast_path_answers_exactly_as_the_litestar_handler(
    shared_service: Service, path: str, body: Any, headers: dict[str, str]
) -> None:
    def answer(url: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if isinstance(body, bytes):
            response = shared_service.http.post(
                url, content=body, headers={"content-type": "application/json", **headers}
            )
        else:
            response = shared_service.http.post(url, json=body, headers=headers)
        kept = [(k, v) for k, v in response.headers.multi_items() if k not in ("date", "server")]
        return response.status_code, kept, response.content

    fast, litestar = answer(path), answer(path + "/")
    assert fast == litestar
    assert 400 <= fast[0] < 500
    assert shared_service.http.get("/jobs").json()["items"] == []


def test_the_submit_fast_path_answers_a_replay_exactly_as_the_litestar_handler(service: Service) -> None:
    job = {"type": "quick_task", "job_id": "same-1", "run_at": "2099-01-01T00:00:00Z", "payload": {"n": 1}}
    created = service.http.post("/jobs", json=job)
    assert created.status_code == 201, created.text
    batch = {"jobs": [{"type": "quick_task", "job_id": "same-2"}, {"type": "report", "depends_on": ["same-2"]}]}
    batch = {"jobs": [{**j, "run_at": "2099-01-01T00:00:00Z"} for j in batch["jobs"]]}
    batch["jobs"][1]["job_id"] = "same-3"
    assert service.http.post("/jobs/batch", json=batch).status_code == 201
    for path, body, headers in [
        ("/jobs", job, {}),
        ("/jobs", {k: v for k, v in job.items() if k != "job_id"}, {"Idempotency-Key": "same-1"}),
        ("/jobs/batch", batch, {}),
    ]:
        fast = service.http.post(path, json=body, headers=headers)
        litestar = service.http.post(path + "/", json=body, headers=headers)
        assert fast.status_code == litestar.status_code == 200, (fast.text, litestar.text)
        assert fast.headers["content-type"] == litestar.headers["content-type"] == "application/json"
        assert fast.content == litestar.content
    conflict = {**job, "priority": "high"}
    fast, litestar = service.http.post("/jobs", json=conflict), service.http.post("/jobs/", json=conflict)
    assert fast.status_code == litestar.status_code == 409
    assert fast.content == litestar.content


@pytest.mark.parametrize("path", ["/jobs", "/jobs/batch"])
@pytest.mark.parametrize(
    ("content_type", "says"),
    [
        (None, "is missing"),
        ("text/plain", "'text/plain'"),
        ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),
        ("multipart/form-data; boundary=b", "'multipart/form-data'"),
        ("application/json; charset=latin-1", "charset 'latin-1'"),
    ],
)
def test_a_body_that_is_not_declared_json_is_a_415_and_creates_nothing(
    shared_service: Service, path: str, content_type: str | None, says: str
) -> None:
    """What a browser form can send without a CORS preflight (form-encoded, multipart, text/plain) never
    reaches the submit path: a cross-site page cannot submit jobs through a user's browser."""
    job = b'{"type": "quick_task", "run_at": "2099-01-01T00:00:00Z"}'
    body = job if path == "/jobs" else b'{"jobs": [' + job + b"]}"
    headers = {} if content_type is None else {"content-type": content_type}
    request = shared_service.http.build_request("POST", path, content=body, headers=headers)
    assert request.headers.get("content-type") == content_type  # httpx adds none for raw content
    response = shared_service.http.send(request)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["errors"][0]["field"] == "Content-Type"
    assert says in problem["detail"]
    assert shared_service.http.get("/jobs").json()["items"] == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.taskq+json"])
def test_json_with_its_charset_or_a_json_suffix_type_is_accepted(service: Service, content_type: str) -> None:
    response = service.http.post("/jobs", content=b'{"type": "quick_task"}', headers={"content-type": content_type})
    assert response.status_code == 201, response.text


def test_a_method_a_route_does_not_have_is_405_with_allow(shared_service: Service) -> None:
    for method, path, allowed in (("PUT", "/jobs", {"GET", "POST"}), ("DELETE", "/stats", {"GET"})):
        response = shared_service.http.request(method, path)
        assert response.status_code == 405, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert allowed <= {m.strip() for m in response.headers["allow"].split(",")}
        assert "allows" in response.json()["detail"]


# ----------------------------------------------------------------------------- schedules and type controls

SCHEDULE = {"schedule_id": "nightly", "cron": "0 3 * * *", "job": {"type": "quick_task"}}

SCHEDULE_CASES: list[tuple[str, Any, int, str]] = [
    ("bad cron", {**SCHEDULE, "cron": "every night"}, 422, "cron"),
    ("cron field out of range", {**SCHEDULE, "cron": "0 25 * * *"}, 422, "cron"),
    ("unknown alias", {**SCHEDULE, "cron": "@fortnightly"}, 422, "cron"),
    ("empty cron", {**SCHEDULE, "cron": ""}, 422, "cron"),
    ("unknown timezone", {**SCHEDULE, "timezone": "Mars/Olympus_Mons"}, 422, "timezone"),
    ("path as timezone", {**SCHEDULE, "timezone": "../../etc/passwd"}, 422, "timezone"),
    ("NUL in the timezone", {**SCHEDULE, "timezone": "UTC\u0000"}, 422, "timezone"),
    ("unknown job type", {**SCHEDULE, "job": {"type": "mine_bitcoin"}}, 422, "job.type"),
    (
        "job above capacity",
        {**SCHEDULE, "job": {"type": "quick_task", "resource_requirements": {"cpu_units": 9}}},
        422,
        "job.resource_requirements.cpu_units",
    ),
    ("job with its own id", {**SCHEDULE, "job": {"type": "quick_task", "job_id": "x"}}, 422, "job.job_id"),
    ("job with dependencies", {**SCHEDULE, "job": {"type": "quick_task", "depends_on": ["a"]}}, 422, "job.depends_on"),
    (
        "NUL in the job payload",
        {**SCHEDULE, "job": {"type": "quick_task", "payload": {"a": "\u0000"}}},
        422,
        "job.payload",
    ),
    (
        "job retry delays reversed",
        {
            **SCHEDULE,
            "job": {"type": "quick_task", "retry_config": {"initial_delay_seconds": 9, "max_delay_seconds": 1}},
        },
        422,
        "job.retry_config.max_delay_seconds",
    ),
    ("missing job", {"schedule_id": "nightly", "cron": "0 3 * * *"}, 422, "job"),
    ("missing cron", {"schedule_id": "nightly", "job": {"type": "quick_task"}}, 422, "cron"),
    ("bad overlap", {**SCHEDULE, "overlap": "queue"}, 422, "overlap"),
    ("bad catch_up", {**SCHEDULE, "catch_up": "some"}, 422, "catch_up"),
    ("colon in the id", {**SCHEDULE, "schedule_id": "a:b"}, 422, "schedule_id"),
    ("long id", {**SCHEDULE, "schedule_id": "s" * 101}, 422, "schedule_id"),
    ("unknown field", {**SCHEDULE, "every": "day"}, 422, "every"),
    ("not an object", [SCHEDULE], 422, "body"),
]


@pytest.mark.parametrize(("name", "body", "status", "field"), SCHEDULE_CASES, ids=[c[0] for c in SCHEDULE_CASES])
def test_a_bad_schedule_is_refused_with_a_problem_naming_the_field(
    shared_service: Service, name: str, body: Any, status: int, field: str
) -> None:
    response = shared_service.http.post("/schedules", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [field], problem
    assert shared_service.http.get("/schedules").json() == []  # nothing was created


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "* *"}, "cron"),
        ({"timezone": "Nowhere/City"}, "timezone"),
        ({"paused": "yes"}, "paused"),
        ({"paused": None}, "paused"),
        ({"job": {"type": "mine_bitcoin"}}, "job.type"),
        ({"overlap": None}, "overlap"),
        ({"schedule_id": "renamed"}, "schedule_id"),
    ],
)
def test_a_bad_schedule_patch_is_refused_and_changes_nothing(
    shared_service: Service, body: dict[str, Any], field: str
) -> None:
    created = shared_service.http.post("/schedules", json={**SCHEDULE, "schedule_id": "patched", "paused": True})
    assert created.status_code == 201, created.text
    try:
        response = shared_service.http.patch("/schedules/patched", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == [field]
        assert shared_service.http.get("/schedules/patched").json()["cron"] == SCHEDULE["cron"]
    finally:
        assert shared_service.http.delete("/schedules/patched").status_code == 204


def test_a_second_schedule_with_the_same_id_is_a_409(shared_service: Service) -> None:
    body = {**SCHEDULE, "schedule_id": "twice", "paused": True}
    assert shared_service.http.post("/schedules", json=body).status_code == 201
    try:
        response = shared_service.http.post("/schedules", json=body)
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == ["schedule_id"]
    finally:
        shared_service.http.delete("/schedules/twice")


@pytest.mark.parametrize(("method", "body"), [("GET", None), ("PATCH", {"paused": True}), ("DELETE", None)])
@pytest.mark.parametrize("bad_id", ["no-such-schedule", "a%00b", "has%20space", "s" * 101])
def test_an_unknown_schedule_is_a_404_naming_the_id(
    shared_service: Service, method: str, body: Any, bad_id: str
) -> None:
    response = shared_service.http.request(method, f"/schedules/{bad_id}", json=body)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["schedule_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"paused": "yes"}, "paused"),
        ({"paused": None}, "paused"),
        ({"max_running": 0}, "max_running"),
        ({"max_running": -1}, "max_running"),
        ({"max_running": 1.5}, "max_running"),
        ({"max_starts_per_second": 0}, "max_starts_per_second"),
        ({"max_starts_per_second": -2}, "max_starts_per_second"),
        ({"max_starts_per_second": "fast"}, "max_starts_per_second"),
        ({"max_parallel": 2}, "max_parallel"),
        ([], "body"),
    ],
)
def test_a_bad_type_control_is_refused_with_a_problem_naming_the_field(
    shared_service: Service, body: Any, field: str
) -> None:
    response = shared_service.http.patch("/types/quick_task", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == [field]
    listed = {t["type"]: t for t in shared_service.http.get("/types").json()}
    assert listed["quick_task"]["max_running"] is None  # nothing was stored


@pytest.mark.parametrize("job_type", ["mine_bitcoin", "a%00b"])
def test_controls_of_an_unregistered_type_are_a_404_naming_the_type(shared_service: Service, job_type: str) -> None:
    response = shared_service.http.patch(f"/types/{job_type}", json={"paused": True})
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["type"]


def test_a_schedule_filter_with_a_nul_is_a_400(shared_service: Service) -> None:
    response = shared_service.http.get("/jobs", params={"schedule_id": "a\u0000b"})
    assert response.status_code == 400, response.text
    assert "schedule_id" in response.text
