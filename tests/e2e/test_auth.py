"""API keys and scopes, end to end: the real service over HTTP and WebSocket on loopback, keys created
through the API and the `taskq keys` CLI, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import _SHARED_ROOTS, ROOT, PgServer, Service, free_port, wait_until

BOOTSTRAP = "bootstrap-secret-for-the-auth-tests-0123456789"
CHALLENGE = 'Bearer realm="taskq"'
# Scheduled far ahead: the module's shared service never starts a worker, so no process appears in it
# while the leftover-process check of another test looks.
JOB = {"type": "quick_task", "payload": {}, "run_at": "2999-01-01T00:00:00Z"}
JOB_TEMPLATE = {"type": "quick_task"}  # a schedule's job: @yearly, so it does not fire during the module

# (method, path, scope needed, JSON body): every guarded route, the fast-path submits included.
GUARDED: list[tuple[str, str, str, Any]] = [
    ("POST", "/jobs", "submit", JOB),
    ("POST", "/jobs/batch", "submit", {"jobs": [JOB]}),
    ("GET", "/jobs", "read", None),
    ("GET", "/jobs/no-such-job", "read", None),
    ("GET", "/jobs/no-such-job/logs", "read", None),
    ("GET", "/jobs/no-such-job/explain", "read", None),
    ("GET", "/stats", "read", None),
    ("GET", "/stats/throughput", "read", None),
    ("GET", "/jobs/no-such-job/graph", "read", None),
    ("PATCH", "/jobs/no-such-job/cancel", "admin", None),
    ("POST", "/jobs/no-such-job/retry", "admin", None),
    ("GET", "/dlq", "admin", None),
    ("GET", "/keys", "admin", None),
    ("POST", "/keys", "admin", {"name": "made-by-the-route-table", "scopes": ["read"]}),
    ("DELETE", "/keys/000000000000", "admin", None),
    ("GET", "/schedules", "read", None),
    ("GET", "/schedules/no-such-schedule", "read", None),
    ("POST", "/schedules", "admin", {"schedule_id": "by-the-route-table", "cron": "@yearly", "job": JOB_TEMPLATE}),
    ("PATCH", "/schedules/no-such-schedule", "admin", {"paused": True}),
    ("DELETE", "/schedules/no-such-schedule", "admin", None),
    ("GET", "/types", "read", None),
    ("PATCH", "/types/no_such_type", "admin", {"paused": True}),
    ("GET", "/no/such/route", "admin", None),  # unknown routes need admin: deny by default
]
OPEN_ROUTES = ["/health/live", "/health/ready", "/metrics", "/openapi.json", "/schema/openapi.json", "/ui"]


def secret_of(key: str) -> str:
    """The secret part of `tq_<key_id>_<secret>`: everything after the second underscore (the secret is
    URL-safe base64, which has underscores of its own: splitting at the last one once left one letter)."""
    secret = key.split("_", 2)[2]
    assert len(secret) >= 40, key
    return secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(service: Service, method: str, path: str, body: Any = None, key: str | None = None) -> httpx.Response:
    return service.http.request(method, path, json=body, headers=bearer(key) if key else {})


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def create_key(service: Service, admin_key: str | None, *scopes: str, name: str = "test") -> dict[str, Any]:
    response = call(service, "POST", "/keys", {"name": name, "scopes": list(scopes)}, admin_key)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKQ_DATABASE_URL": database_url}
    return subprocess.run(
        [str(Path(sys.executable).with_name("taskq")), "keys", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ws_url(service: Service, query: str = "") -> str:
    return f"ws://127.0.0.1:{service.port}/jobs/stream{query}"


async def handshake(url: str, **kwargs: Any) -> int:
    """The HTTP status of the WebSocket handshake: 101 when accepted."""
    try:
        async with websockets.connect(url, open_timeout=10, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.fixture(scope="module")
def secured(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service with a bootstrap key (so keys are required) for the tests that only add keys."""
    log = tmp_path_factory.mktemp("secured") / "service.log"
    service = Service(pg.fresh_database(), log, {"TASKQ_BOOTSTRAP_KEY": BOOTSTRAP}).start()
    _SHARED_ROOTS.add(service.pid)
    yield service
    _SHARED_ROOTS.discard(service.pid)
    code = service.stop()
    service.http.close()
    assert code == 0, f"taskq serve exited with {code}:\n{service.logs()}"


@pytest.fixture(scope="module")
def scoped_keys(secured: Service) -> dict[str, str]:
    """One key per scope, made with the bootstrap key."""
    return {
        scope: create_key(secured, BOOTSTRAP, scope, name=f"only-{scope}")["key"]
        for scope in ("submit", "read", "admin")
    }


# ---------------------------------------------------------------------------------------------- 401 / 403


@pytest.mark.parametrize(("method", "path", "scope", "body"), GUARDED)
def test_a_guarded_route_without_a_key_is_401_with_a_bearer_challenge(
    secured: Service, method: str, path: str, scope: str, body: Any
) -> None:
    response = call(secured, method, path, body)

    problem = assert_problem(response, 401)
    assert response.headers["www-authenticate"] == CHALLENGE
    assert problem["errors"][0]["field"] == "Authorization"


@pytest.mark.parametrize(
    "wrong",
    ["nonsense", "tq_000000000000_" + "A" * 43, BOOTSTRAP + "x", BOOTSTRAP[:-1]],
    ids=["not-a-key", "unknown-key-id", "bootstrap-longer", "bootstrap-shorter"],
)
def test_a_wrong_key_is_401_with_a_bearer_challenge(secured: Service, wrong: str) -> None:
    for method, path, _, body in (GUARDED[0], GUARDED[2]):  # the fast path and a Litestar route
        response = call(secured, method, path, body, wrong)

        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == CHALLENGE


def test_a_right_key_id_with_a_wrong_secret_is_401(secured: Service, scoped_keys: dict[str, str]) -> None:
    key = scoped_keys["read"]
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")

    assert_problem(call(secured, "GET", "/jobs", key=forged), 401)
    assert call(secured, "GET", "/jobs", key=key).status_code == 200


@pytest.mark.parametrize(("method", "path", "scope", "body"), GUARDED)
def test_a_key_without_the_routes_scope_is_403_naming_the_scope(
    secured: Service, scoped_keys: dict[str, str], method: str, path: str, scope: str, body: Any
) -> None:
    for other in sorted(set(scoped_keys) - {scope}):
        response = call(secured, method, path, body, scoped_keys[other])

        problem = assert_problem(response, 403)
        assert repr(scope) in problem["detail"], problem
        assert problem["errors"][0]["field"] == "Authorization"


@pytest.mark.parametrize(("method", "path", "scope", "body"), GUARDED)
def test_a_key_with_the_routes_scope_reaches_the_route(
    secured: Service, scoped_keys: dict[str, str], method: str, path: str, scope: str, body: Any
) -> None:
    response = call(secured, method, path, body, scoped_keys[scope])

    # The route's own answer: unknown ids are 404, creations 201, reads 200.
    expected = {"POST": {201}, "GET": {200, 404}, "PATCH": {404}, "DELETE": {404}}[method]
    if path.endswith("/retry"):
        expected = {404}
    assert response.status_code in expected, response.text


def test_the_bootstrap_key_has_every_scope(secured: Service) -> None:
    for method, path, _, body in GUARDED:
        assert call(secured, method, path, body, BOOTSTRAP).status_code not in (401, 403), (method, path)


@pytest.mark.parametrize("path", OPEN_ROUTES)
def test_probes_metrics_and_the_schema_need_no_key(secured: Service, path: str) -> None:
    assert secured.http.get(path).status_code == 200, path


# ------------------------------------------------------------------------------------------------ /keys


def test_a_created_key_is_shown_once_listed_without_its_secret_and_revoked(secured: Service) -> None:
    created = create_key(secured, BOOTSTRAP, "read", "submit", name="ci")

    assert created["scopes"] == ["submit", "read"]
    assert created["key"].startswith(f"tq_{created['key_id']}_")
    assert created["created_at"].endswith("Z")
    listing = call(secured, "GET", "/keys", key=BOOTSTRAP)
    assert listing.status_code == 200
    assert secret_of(created["key"]) not in listing.text
    mine = [k for k in listing.json() if k["key_id"] == created["key_id"]]
    same = ("key_id", "name", "scopes", "created_at", "rate_limits")
    assert mine == [{k: created[k] for k in same} | {"revoked_at": None}]
    assert created["rate_limits"] is None  # none of its own: the node's limits apply

    assert call(secured, "DELETE", f"/keys/{created['key_id']}", key=BOOTSTRAP).status_code == 204
    revoked = [k for k in call(secured, "GET", "/keys", key=BOOTSTRAP).json() if k["key_id"] == created["key_id"]]
    assert revoked[0]["revoked_at"] is not None


@pytest.mark.parametrize("key_id", ["000000000000", "not-an-id", "a%00b"])
def test_revoking_an_unknown_key_is_404(secured: Service, key_id: str) -> None:
    assert_problem(call(secured, "DELETE", f"/keys/{key_id}", key=BOOTSTRAP), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["read"]}, "name"),
        ({"name": "a\u0000b", "scopes": ["read"]}, "name"),
        ({"name": "ok", "scopes": []}, "scopes"),
        ({"name": "ok", "scopes": ["read", "root"]}, "scopes"),
        ({"name": "ok"}, "scopes"),
        ({"name": 5, "scopes": ["read"]}, "name"),
        ({"name": "ok", "scopes": ["read"], "extra": 1}, "extra"),
    ],
)
def test_a_bad_key_request_is_422_naming_the_field(secured: Service, body: dict[str, Any], field: str) -> None:
    problem = assert_problem(call(secured, "POST", "/keys", body, BOOTSTRAP), 422)

    assert problem["errors"][0]["field"] == field, problem


def test_a_key_request_must_be_json(secured: Service) -> None:
    response = secured.http.post(
        "/keys", content=b"name=x&scopes=admin", headers={**bearer(BOOTSTRAP), "Content-Type": "text/plain"}
    )

    assert_problem(response, 415)


def test_a_revoked_key_is_refused_within_two_seconds(secured: Service) -> None:
    key = create_key(secured, BOOTSTRAP, "read")
    assert call(secured, "GET", "/jobs", key=key["key"]).status_code == 200  # now cached as valid

    assert call(secured, "DELETE", f"/keys/{key['key_id']}", key=BOOTSTRAP).status_code == 204

    wait_until(lambda: call(secured, "GET", "/jobs", key=key["key"]).status_code == 401, timeout=2.0, what="401")


def test_a_revoke_through_the_cli_is_seen_by_the_running_service(secured: Service) -> None:
    key = create_key(secured, BOOTSTRAP, "read", "submit")
    assert call(secured, "GET", "/jobs", key=key["key"]).status_code == 200
    assert call(secured, "POST", "/jobs", JOB, key=key["key"]).status_code == 201  # fast path cached too

    done = run_cli(secured.database_url, "revoke", key["key_id"])

    assert done.returncode == 0, done.stderr
    # The CLI's own start (migrations) takes time: the deadline counts from its end.
    for method, path, _, body in (GUARDED[0], GUARDED[2]):
        wait_until(
            lambda m=method, p=path, b=body: call(secured, m, p, b, key["key"]).status_code == 401,
            timeout=2.0,
            what=f"{method} {path} to refuse the revoked key",
        )


# --------------------------------------------------------------------------------------------- WebSocket


def test_the_stream_refuses_a_handshake_without_a_valid_key(secured: Service, scoped_keys: dict[str, str]) -> None:
    assert asyncio.run(handshake(ws_url(secured))) == 401
    assert asyncio.run(handshake(ws_url(secured, "?token=tq_000000000000_" + "A" * 43))) == 401
    assert asyncio.run(handshake(ws_url(secured, f"?token={scoped_keys['submit']}"))) == 403


def test_the_stream_accepts_a_key_as_token_parameter_or_header_and_never_logs_it(
    secured: Service, scoped_keys: dict[str, str]
) -> None:
    token = scoped_keys["read"]

    assert asyncio.run(handshake(ws_url(secured, f"?after=0&token={token}"))) == 101
    assert asyncio.run(handshake(ws_url(secured), additional_headers=bearer(token))) == 101
    wait_until(lambda: "WebSocket /jobs/stream?after=0" in secured.logs(), timeout=5, what="the handshake's log line")
    secret = secret_of(token)
    assert secret not in secured.logs()
    assert BOOTSTRAP not in secured.logs()


def key_protocol(key: str) -> str:
    """The subprotocol a browser offers its key in (see auth.KEY_PROTOCOL)."""
    return "taskq.bearer." + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


async def selected_protocol(url: str, protocols: list[str]) -> str | None:
    async with websockets.connect(url, open_timeout=10, subprotocols=protocols) as socket:  # type: ignore[arg-type]
        return socket.subprotocol


def test_the_stream_takes_a_key_as_a_subprotocol_and_never_echoes_or_logs_it(
    secured: Service, scoped_keys: dict[str, str]
) -> None:
    token = scoped_keys["read"]
    own = f"http://127.0.0.1:{secured.port}"

    chosen = asyncio.run(selected_protocol(ws_url(secured, "?after=0"), ["taskq", key_protocol(token)]))

    assert chosen == "taskq"  # a browser fails a handshake that selects none of its offers
    assert asyncio.run(handshake(ws_url(secured), subprotocols=["taskq", key_protocol(BOOTSTRAP)], origin=own)) == 101
    assert asyncio.run(handshake(ws_url(secured), subprotocols=["taskq", key_protocol(scoped_keys["submit"])])) == 403
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert asyncio.run(handshake(ws_url(secured), subprotocols=["taskq", key_protocol(forged)])) == 401
    assert asyncio.run(handshake(ws_url(secured), subprotocols=["taskq", "taskq.bearer.%%%"])) == 401
    wait_until(lambda: "WebSocket /jobs/stream?after=0" in secured.logs(), timeout=5, what="the handshake's log line")
    assert secret_of(token) not in secured.logs()
    assert key_protocol(token) not in secured.logs()


def test_whoami_tells_a_key_its_own_scopes(secured: Service, scoped_keys: dict[str, str]) -> None:
    for scope, key in scoped_keys.items():
        response = call(secured, "GET", "/auth/whoami", key=key)

        assert response.status_code == 200, response.text
        assert response.json()["scopes"] == [scope]
        assert response.json()["auth_required"] is True
        assert response.json()["caller"] == f"key {key.split('_')[1]}"
    everything = call(secured, "GET", "/auth/whoami", key=BOOTSTRAP).json()
    assert everything == {"auth_required": True, "caller": "bootstrap key", "scopes": ["submit", "read", "admin"]}
    assert_problem(call(secured, "GET", "/auth/whoami"), 401)
    assert_problem(call(secured, "GET", "/auth/whoami", key="tq_000000000000_" + "A" * 43), 401)


def test_the_stream_refuses_a_foreign_origin_even_with_a_key(secured: Service, scoped_keys: dict[str, str]) -> None:
    token = scoped_keys["read"]
    own = f"http://127.0.0.1:{secured.port}"

    assert asyncio.run(handshake(ws_url(secured, f"?token={token}"), origin="https://evil.example")) == 403
    assert asyncio.run(handshake(ws_url(secured, f"?token={token}"), origin="null")) == 403
    assert asyncio.run(handshake(ws_url(secured, f"?token={token}"), origin=own)) == 101


def test_allowed_origins_admit_a_listed_page(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_ALLOWED_ORIGINS="https://ops.example.com").start()

    assert asyncio.run(handshake(ws_url(service), origin="https://ops.example.com")) == 101
    assert asyncio.run(handshake(ws_url(service), origin="https://other.example.com")) == 403


# ----------------------------------------------------------------------------------------------- modes


def test_loopback_without_keys_is_open_until_a_key_exists(service_factory: Callable[..., Service]) -> None:
    service = service_factory().start()
    assert service.http.get("/jobs").status_code == 200
    assert service.http.post("/jobs", json=JOB).status_code == 201
    assert service.http.get("/auth/whoami").json() == {
        "auth_required": False,
        "caller": None,
        "scopes": ["submit", "read", "admin"],
    }
    # Open, but a browser page elsewhere still cannot post a bodiless admin request (form CSRF).
    cross = service.http.post("/jobs/no-such-job/retry", headers={"Origin": "https://evil.example"})
    assert_problem(cross, 403)

    admin = create_key(service, None, "submit", "read", "admin")

    assert_problem(service.http.get("/jobs"), 401)
    assert call(service, "GET", "/jobs", key=admin["key"]).status_code == 200
    assert call(service, "DELETE", f"/keys/{admin['key_id']}", key=admin["key"]).status_code == 204
    # A revoked key still counts as "a key exists": revoking the last one does not reopen the API.
    wait_until(lambda: service.http.get("/jobs").status_code == 401, timeout=2.0, what="still closed")
    assert service.http.get("/jobs").status_code == 401


def test_a_key_made_by_the_cli_closes_a_running_loopback_service(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory().start()
    assert service.http.get("/jobs").status_code == 200

    done = run_cli(service.database_url, "create", "--name", "ops", "--scope", "read")
    assert done.returncode == 0, done.stderr
    key = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("key: "))

    wait_until(lambda: service.http.get("/jobs").status_code == 401, timeout=2.0, what="keys to be required")
    assert call(service, "GET", "/jobs", key=key).status_code == 200


def test_a_non_loopback_service_without_keys_refuses_to_start(pg: PgServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    env |= {"TASKQ_DATABASE_URL": pg.fresh_database(), "TASKQ_HOST": "0.0.0.0", "TASKQ_PORT": str(free_port())}

    done = subprocess.run(
        [sys.executable, "-m", "service", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 2, done.stderr
    assert "TASKQ_HOST=0.0.0.0 is not a loopback address and no API key exists" in done.stderr


def test_auth_off_starts_on_any_address_with_a_warning(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_HOST="0.0.0.0", TASKQ_AUTH="off").start()

    assert service.http.get("/jobs").status_code == 200
    assert "TASKQ_AUTH=off" in service.logs()


def test_a_non_loopback_service_with_a_bootstrap_key_starts_and_requires_it(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(TASKQ_HOST="0.0.0.0", TASKQ_BOOTSTRAP_KEY=BOOTSTRAP).start()

    assert_problem(service.http.get("/jobs"), 401)
    assert call(service, "GET", "/jobs", key=BOOTSTRAP).status_code == 200
    assert BOOTSTRAP not in service.logs()


# ------------------------------------------------------------------------------------------------- CLI


def test_the_cli_creates_lists_and_revokes_keys(pg: PgServer) -> None:
    url = pg.fresh_database()

    created = run_cli(url, "create", "--name", "ci", "--scope", "submit,read")
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(": ", 1) for line in created.stdout.splitlines())
    assert fields["key"].startswith(f"tq_{fields['key_id']}_")
    assert fields["scopes"] == "submit,read"

    listed = run_cli(url, "list")
    assert listed.returncode == 0, listed.stderr
    assert fields["key_id"] in listed.stdout
    assert " ci " in listed.stdout
    assert secret_of(fields["key"]) not in listed.stdout

    revoked = run_cli(url, "revoke", fields["key_id"])
    assert revoked.returncode == 0, revoked.stderr
    row = next(line for line in run_cli(url, "list").stdout.splitlines() if fields["key_id"] in line)
    assert not row.rstrip().endswith("-"), row  # a revocation time instead of "-"

    unknown = run_cli(url, "revoke", "000000000000")
    assert unknown.returncode == 1
    assert "no API key has id" in unknown.stderr
    bad = run_cli(url, "create", "--name", "x", "--scope", "root")
    assert bad.returncode == 2
    assert "--scope" in bad.stderr
