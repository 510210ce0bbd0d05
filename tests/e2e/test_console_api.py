"""The reads the web console added to the API (`GET /jobs/{id}/graph`, `GET /stats/throughput`,
`GET /jobs?id_prefix=`) and the serving of its files, over real HTTP against the real service. The
console itself is tested in a browser in tests/browser."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Service


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    return body


def test_graph_throughput_and_id_prefix_answer_what_the_console_draws(service: Service) -> None:
    retry = {"max_attempts": 1}
    service.submit(job_id="g-parent-ok", type="quick_task")
    service.submit(job_id="g-parent-bad", type="quick_task", payload={"fail_times": 1}, retry_config=retry)
    service.submit(job_id="g-middle", type="report", depends_on=["g-parent-ok", "g-parent-bad"])
    service.submit(job_id="g-child", type="report", depends_on=["g-middle"])
    service.wait_status("g-child", "upstream_failed")

    graph = service.http.get("/jobs/g-middle/graph").json()

    assert graph["job_id"] == "g-middle"
    assert graph["status"] == "upstream_failed"
    assert {(p["job_id"], p["status"]) for p in graph["parents"]} == {
        ("g-parent-ok", "succeeded"),
        ("g-parent-bad", "failed"),
    }
    assert graph["children"] == [{"job_id": "g-child", "type": "report", "status": "upstream_failed"}]
    assert graph["more_parents"] is False
    assert graph["more_children"] is False

    minutes = service.http.get("/stats/throughput").json()["minutes"]
    assert len(minutes) == 15
    assert minutes == sorted(minutes, key=lambda m: m["at"])
    assert sum(m["succeeded"] for m in minutes) == 1  # g-parent-ok
    assert sum(m["failed"] for m in minutes) == 1  # g-parent-bad; upstream failures are not counted
    assert sum(m["started"] for m in minutes) == 2
    assert len(service.http.get("/stats/throughput?minutes=1").json()["minutes"]) == 1

    prefixed = service.http.get("/jobs?id_prefix=g-parent-").json()
    assert [j["job_id"] for j in prefixed["items"]] == ["g-parent-bad", "g-parent-ok"]
    one = service.http.get("/jobs?id_prefix=g-parent-&limit=1").json()
    rest = service.http.get(f"/jobs?id_prefix=g-parent-&limit=1&cursor={one['next_cursor']}").json()
    assert [j["job_id"] for j in one["items"] + rest["items"]] == ["g-parent-bad", "g-parent-ok"]
    assert rest["next_cursor"] is None
    # Literal text, not a pattern: LIKE's wildcards match nothing here.
    assert service.http.get("/jobs?id_prefix=g_%").json()["items"] == []


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/jobs?id_prefix=", 400, "id_prefix"),
        ("/jobs?id_prefix=a%00b", 400, "id_prefix"),
        ("/jobs?id_prefix=" + "x" * 129, 400, "id_prefix"),
        ("/stats/throughput?minutes=0", 400, "minutes"),
        ("/stats/throughput?minutes=61", 400, "minutes"),
        ("/stats/throughput?minutes=soon", 400, "minutes"),
        ("/jobs/no-such-job/graph", 404, None),
        ("/jobs/has%20space/graph", 404, None),
        ("/jobs/a%00b/graph", 404, None),
        ("/ui/0000000000000000/app.js", 404, None),
        ("/ui/0000000000000000/..%2Fconsole.py", 404, None),  # names are looked up, never joined to a path
    ],
)
def test_bad_console_requests_are_problems_not_500s(
    shared_service: Service, path: str, status: int, field: str | None
) -> None:
    body = problem(shared_service.http.get(path), status)

    if field is not None:
        assert body["errors"][0]["field"] == field, body


def test_the_console_page_names_its_files_by_version_under_a_strict_policy(shared_service: Service) -> None:
    index = shared_service.http.get("/ui")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    policy = index.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe" not in policy
    assert index.headers["x-content-type-options"] == "nosniff"
    assert "__VERSION__" not in index.text
    assert shared_service.http.get("/ui/").status_code == 200
    again = shared_service.http.get("/ui", headers={"If-None-Match": index.headers["etag"]})
    assert again.status_code == 304

    version = index.text.split('src="/ui/', 1)[1].split("/", 1)[0]
    for name, media in (("app.js", "text/javascript"), ("console.css", "text/css"), ("icon.svg", "image/svg+xml")):
        asset = shared_service.http.get(f"/ui/{version}/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].startswith(media), name
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
