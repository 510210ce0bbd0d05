"""The client's pure parts: problem documents to typed errors, the retry decision, DAG id assignment."""

from __future__ import annotations

import pytest
from taskq import Conflict, Forbidden, Invalid, NotFound, TaskqError, TooManyRequests, Unauthorized, Unavailable
from taskq.dag import DagBuilder
from taskq.errors import error_from_response
from taskq.models import JobSpec
from taskq.retrying import Backoff, should_retry

PROBLEM = b'{"type":"about:blank","title":"Invalid request","status":422,"detail":"priority: bad",'
PROBLEM += b'"errors":[{"field":"priority","message":"bad"}]}'


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, Invalid),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (422, Invalid),
        (429, TooManyRequests),
        (503, Unavailable),
        (500, TaskqError),
        (413, TaskqError),
    ],
)
def test_each_status_maps_to_its_error_class(status: int, cls: type[TaskqError]) -> None:
    error = error_from_response(status, {}, b'{"title": "t", "detail": "d", "status": %d}' % status)
    assert type(error) is cls
    assert (error.status, error.title, error.detail) == (status, "t", "d")


def test_a_validation_problem_carries_its_fields() -> None:
    error = error_from_response(422, {}, PROBLEM)
    assert isinstance(error, Invalid)
    assert error.field == "priority"
    assert error.errors == [{"field": "priority", "message": "bad"}]


def test_retry_after_is_read_in_seconds() -> None:
    error = error_from_response(429, {"retry-after": "28"}, b'{"title": "Too many requests", "detail": "x"}')
    assert isinstance(error, TooManyRequests)
    assert error.retry_after == 28.0
    assert error_from_response(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"").retry_after is None


def test_a_body_that_is_not_a_problem_still_gives_the_typed_error() -> None:
    error = error_from_response(503, {}, b"Service Unavailable")
    assert isinstance(error, Unavailable)
    assert error.detail == "Service Unavailable"
    assert error.errors == []


@pytest.mark.parametrize(
    ("status", "idempotent", "expected"),
    [
        (None, True, True),
        (503, True, True),
        (429, True, True),
        (500, True, False),
        (404, True, False),
        (409, True, False),
        (None, False, False),  # a submit without an id: a lost answer may hide a committed job
        (503, False, False),
        (429, False, False),
    ],
)
def test_only_idempotent_calls_are_retried_and_only_on_503_429_or_no_answer(
    status: int | None, idempotent: bool, expected: bool
) -> None:
    assert should_retry(status, idempotent) is expected


def test_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(initial=0.1, multiplier=2, cap=1.0, budget=100, jitter=0.1)
    assert [backoff.delay(n, 0, None, 0.5) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.delay(0, 0, None, 0.0) == pytest.approx(0.09)
    assert backoff.delay(0, 0, None, 0.9999) == pytest.approx(0.11, abs=1e-4)


def test_retry_after_replaces_the_computed_delay() -> None:
    assert Backoff(budget=100).delay(0, 0, 3.0, 0.5) == 3.0


def test_no_retry_once_waiting_would_pass_the_budget() -> None:
    backoff = Backoff(budget=10)
    assert backoff.delay(0, 9.5, 1.0, 0.5) is None  # Retry-After beyond what is left: fail now
    assert backoff.delay(0, 9.0, 1.0, 0.5) == 1.0
    assert Backoff(budget=0).delay(0, 0, None, 0.5) is None  # retry_for=0 turns retries off


def test_the_dag_gives_every_job_an_id_so_edges_can_name_it() -> None:
    ids = iter(["job_a", "job_b"])
    dag = DagBuilder(new_id=lambda: next(ids))
    a = dag.add("quick_task", {"n": 1})
    b = dag.add("quick_task", depends_on=[a])
    c = dag.add("report", job_id="mine", depends_on=[a, b, "existing-job"])
    assert [j.job_id for j in dag.jobs] == ["job_a", "job_b", "mine"]
    assert b.depends_on == ["job_a"]
    assert c.depends_on == ["job_a", "job_b", "existing-job"]
    assert a.depends_on is None  # left out of the body: the server's default


def test_default_ids_are_unique_and_in_the_servers_form() -> None:
    dag = DagBuilder()
    ids = [dag.add("quick_task").job_id for _ in range(100)]
    assert len(set(ids)) == 100
    assert all(i is not None and i.startswith("job_") and len(i) == 36 for i in ids)


def test_a_dag_refuses_the_same_id_twice_and_an_edge_to_a_job_without_id() -> None:
    dag = DagBuilder()
    dag.add("quick_task", job_id="x")
    with pytest.raises(ValueError, match="already in this dag"):
        dag.add("quick_task", job_id="x")
    with pytest.raises(ValueError, match="without a job_id"):
        dag.add("quick_task", depends_on=[JobSpec(type="report")])
