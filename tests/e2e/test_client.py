"""The Python client (`taskq.Client` and `taskq.AsyncClient`) against one real service over HTTP on
loopback, for the calls that need no job to run. Every job here is scheduled for 2999, so the module's
shared service never starts a worker and no test sees another's state through anything but ids it
does not look at. Each test runs for both clients (the `client` fixture's two params)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import taskq

from tests.conftest import _SHARED_ROOTS, PgServer, Service
from tests.e2e.client_kinds import make_client

KEY = "bootstrap-secret-for-the-client-tests-0123456789"
LATER = datetime(2999, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def shared(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("client") / "service.log"
    service = Service(pg.fresh_database(), log, {"TASKQ_BOOTSTRAP_KEY": KEY}).start()
    _SHARED_ROOTS.add(service.pid)
    yield service
    _SHARED_ROOTS.discard(service.pid)
    code = service.stop()
    service.http.close()
    assert code == 0, f"taskq serve exited with {code}:\n{service.logs()}"


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(shared: Service, kind: str) -> Iterator[Any]:
    client, close = make_client(kind, shared.base_url, api_key=KEY)
    yield client
    close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_submit_returns_the_typed_job_and_get_reads_it_back(client: Any) -> None:
    job_id = unique("submit")
    job = client.submit(
        "send_email",
        {"to": "a@example.com"},
        job_id=job_id,
        priority="high",
        resources={"cpu_units": 2, "memory_mb": 256},
        retry={"max_attempts": 5},
        timeout=30,
        run_at=LATER,
    )
    assert isinstance(job, taskq.Job)
    assert (job.job_id, job.status, job.priority, job.run_at) == (job_id, "scheduled", "high", LATER)
    assert job.resource_requirements == taskq.Resources(2, 256)
    assert job.retry_config.max_attempts == 5
    assert job.timeout_seconds == 30
    again = client.get(job_id)
    assert again.payload == {"to": "a@example.com"}
    assert again.created_at == job.created_at
    assert not again.terminal


def test_an_idempotent_replay_returns_the_same_job(client: Any) -> None:
    key = unique("idem")
    first = client.submit("quick_task", run_at=LATER, idempotency_key=key)
    second = client.submit("quick_task", run_at=LATER, idempotency_key=key)
    assert first.job_id == second.job_id == key


def test_list_follows_the_cursor_across_pages(client: Any) -> None:
    kind_of_job = "data_export"  # filter to this test's own jobs by a payload-free marker: their ids
    ids = {client.submit(kind_of_job, job_id=unique("page"), run_at=LATER).job_id for _ in range(5)}
    listed = [job.job_id for job in client.list(status="scheduled", type=kind_of_job, page_size=2)]
    assert ids <= set(listed)
    assert len(listed) == len(set(listed))  # no job twice across page boundaries
    assert all(isinstance(job, taskq.Job) for job in client.list(type=kind_of_job, page_size=2))


def test_cancel_returns_the_cancelled_job_and_a_second_cancel_is_a_conflict(client: Any) -> None:
    job_id = client.submit("quick_task", run_at=LATER).job_id
    cancelled = client.cancel(job_id)
    assert (cancelled.status, cancelled.terminal) == ("cancelled", True)
    with pytest.raises(taskq.Conflict) as caught:
        client.cancel(job_id)
    assert caught.value.status == 409
    assert "already cancelled" in caught.value.detail


def test_submit_many_and_the_dag_builder_submit_one_batch(client: Any) -> None:
    accepted = client.submit_many(
        [
            {"type": "quick_task", "job_id": unique("batch"), "run_at": LATER},
            taskq.JobSpec(type="report", run_at=LATER),
        ]
    )
    assert [type(a) for a in accepted] == [taskq.Accepted, taskq.Accepted]
    assert [a.status for a in accepted] == ["scheduled", "scheduled"]

    dag = client.dag()
    parent = dag.add("data_fetch", {"n": 1}, run_at=LATER)
    child = dag.add("analysis", depends_on=[parent])
    accepted = dag.submit()
    assert [a.job_id for a in accepted] == [parent.job_id, child.job_id]
    assert [a.status for a in accepted] == ["scheduled", "blocked"]
    assert client.get(child.job_id).depends_on == [parent.job_id]


def test_explain_and_stats(client: Any) -> None:
    job_id = client.submit("quick_task", run_at=LATER).job_id
    explained = client.explain(job_id)
    assert explained["job_id"] == job_id
    assert explained["status"] == "scheduled"
    stats = client.stats()
    assert isinstance(stats, taskq.Stats)
    assert stats.capacity == taskq.Resources(8, 4096)
    assert stats.jobs_by_status["scheduled"] >= 1


def test_logs_of_a_job_that_has_not_run(client: Any) -> None:
    job_id = client.submit("quick_task", run_at=LATER).job_id
    lines = list(client.logs(job_id))
    assert lines[0].event == "submitted"
    assert all(isinstance(line, taskq.LogLine) for line in lines)


def test_an_unknown_job_is_not_found(client: Any) -> None:
    with pytest.raises(taskq.NotFound) as caught:
        client.get("no-such-job")
    assert (caught.value.status, caught.value.title) == (404, "Job not found")


def test_the_same_id_with_another_body_is_a_conflict(client: Any) -> None:
    job_id = unique("conflict")
    client.submit("quick_task", {"n": 1}, job_id=job_id, run_at=LATER)
    with pytest.raises(taskq.Conflict, match="different body"):
        client.submit("quick_task", {"n": 2}, job_id=job_id, run_at=LATER)


def test_an_invalid_submission_names_its_field(client: Any) -> None:
    with pytest.raises(taskq.Invalid) as caught:
        client.submit("quick_task", priority="urgent")
    assert (caught.value.status, caught.value.field) == (422, "priority")
    with pytest.raises(taskq.Invalid) as caught:
        client.submit("quick_task", resources={"cpu_units": 64, "memory_mb": 1})
    assert caught.value.field == "resource_requirements.cpu_units"


def test_a_missing_or_wrong_key_is_unauthorized_and_a_narrow_key_forbidden(shared: Service, kind: str) -> None:
    created = shared.http.post(
        "/keys", json={"name": unique("read-only"), "scopes": ["read"]}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert created.status_code == 201, created.text
    for key, error in ((None, taskq.Unauthorized), ("wrong", taskq.Unauthorized), (created.json()["key"], None)):
        client, close = make_client(kind, shared.base_url, api_key=key)
        try:
            if error is None:
                assert client.stats().capacity.cpu_units == 8  # the read key reads
                with pytest.raises(taskq.Forbidden) as forbidden:
                    client.submit("quick_task", run_at=LATER)
                assert forbidden.value.status == 403
                assert "submit" in forbidden.value.detail
            else:
                with pytest.raises(error) as caught:
                    client.get("anything")
                assert caught.value.status == 401
                with pytest.raises(error):
                    next(iter(client.stream()))  # the stream's handshake is refused the same way
        finally:
            close()


def test_a_connection_refused_is_connection_failed_after_the_retry_budget(kind: str) -> None:
    from tests.conftest import free_port

    client, close = make_client(kind, f"http://127.0.0.1:{free_port()}", retry_for=0.3)
    try:
        with pytest.raises(taskq.ConnectionFailed) as caught:
            client.get("x")
        assert caught.value.status is None
    finally:
        close()
