"""The pure parts of authentication: the key format and hash, the route -> scope map, the Origin rule,
the token's removal from a WebSocket's query string, the key cache's expiry and the auth settings."""

from __future__ import annotations

import asyncio
import base64
import warnings
from typing import Any

import pytest
from litestar.exceptions import LitestarDeprecationWarning

from service import credentials
from service.api import auth
from service.api.app import create_app
from service.errors import Unauthenticated
from service.settings import Secret, SettingsError, is_loopback, load
from service.store import gateway


def test_a_new_key_parses_back_to_its_id_and_secret_and_matches_its_digest() -> None:
    made = credentials.new_key()

    assert credentials.parse_key(made.key) == (made.key_id, made.secret)
    assert credentials.matches(made.secret, made.salt, made.digest)
    assert not credentials.matches(made.secret[:-1] + "x", made.salt, made.digest)
    assert made.secret not in repr(made)


def test_two_keys_never_share_a_salt_so_equal_secrets_would_not_share_a_digest() -> None:
    a, b = credentials.new_key(), credentials.new_key()

    assert a.salt != b.salt
    assert credentials.digest(a.salt, "same") != credentials.digest(b.salt, "same")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tq_",
        "tq_0123456789ab",
        "tq_0123456789AB_" + "a" * 43,
        "tq_0123456789ab_" + "a" * 42,
        "xx_0123456789ab_" + "a" * 43,
    ],
)
def test_anything_but_a_well_formed_key_does_not_parse(text: str) -> None:
    assert credentials.parse_key(text) is None


@pytest.mark.parametrize(
    ("scopes", "problem"),
    [(["read"], None), (["submit", "read", "admin"], None), ([], "at least one"), (["read", "root"], "'root'")],
)
def test_scopes_must_be_a_non_empty_subset_of_the_three(scopes: list[str], problem: str | None) -> None:
    found = credentials.scope_problem(scopes)

    assert (found is None) if problem is None else (found is not None and problem in found)


def test_scopes_are_kept_in_the_documented_order_without_repeats() -> None:
    assert credentials.ordered(["admin", "read", "admin"]) == ["read", "admin"]


# ------------------------------------------------------------------------------------------- route map


def test_every_route_the_app_serves_is_in_the_scope_map() -> None:
    """A new route fails here until it is given a scope (or declared open) in service/api/auth.py."""
    with warnings.catch_warnings():  # Litestar's notes on the handlers' style are not this test's concern
        warnings.simplefilter("ignore", LitestarDeprecationWarning)
        app = create_app(load({}), "postgresql://unused/", "/nonexistent.sock")
    served = set()
    for route in app.routes:
        methods = getattr(route, "methods", None) or {"WS"}
        for method in methods - {"OPTIONS", "HEAD"}:
            served.add((method, route.path_format))

    assert {("WS", "/jobs/stream"), ("POST", "/jobs"), ("DELETE", "/keys/{key_id}")} <= served, served
    missing = {r for r in served if r not in auth.ROUTES and not r[1].startswith("/schema")}
    assert not missing, f"routes without a scope in auth.ROUTES: {sorted(missing)}"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/jobs", "submit"),
        ("POST", "/jobs/batch", "submit"),
        ("GET", "/jobs", "read"),
        ("GET", "/jobs/batch", "read"),  # a job may be called "batch": only POST /jobs/batch submits
        ("GET", "/jobs/abc", "read"),
        ("HEAD", "/jobs/abc", "read"),
        ("GET", "/jobs/abc/logs", "read"),
        ("GET", "/jobs/abc/explain", "read"),
        ("GET", "/stats", "read"),
        ("WS", "/jobs/stream", "read"),
        ("PATCH", "/jobs/abc/cancel", "admin"),
        ("POST", "/jobs/abc/retry", "admin"),
        ("GET", "/dlq", "admin"),
        ("POST", "/keys", "admin"),
        ("GET", "/keys", "admin"),
        ("DELETE", "/keys/0123456789ab", "admin"),
        ("GET", "/health/live", None),
        ("GET", "/health/ready", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("GET", "/schema/swagger", None),
        ("GET", "/auth/whoami", auth.ANY_KEY),
        ("GET", "/jobs/abc/graph", "read"),
        ("GET", "/stats/throughput", "read"),
        ("GET", "/ui", None),
        ("GET", "/ui/", None),
        ("GET", "/ui/0123456789abcdef/app.js", None),
        ("GET", "/ui/0123456789abcdef/sub/app.js", "admin"),
        ("POST", "/ui", "admin"),
        # not routes: admin, so that nothing new is open by accident
        ("DELETE", "/jobs/abc", "admin"),
        ("GET", "/jobs/abc/logs/extra", "admin"),
        ("GET", "/jobs//logs", "admin"),
        ("POST", "/metrics", "admin"),
        ("WS", "/jobs", "admin"),
        ("GET", "/", "admin"),
        ("OPTIONS", "/jobs", "admin"),
    ],
)
def test_each_request_needs_the_scope_of_its_route(method: str, path: str, scope: str | None) -> None:
    assert auth.required_scope(method, path)[0] == scope


def test_a_403_names_the_route_template_not_the_ids_in_the_path() -> None:
    assert auth.required_scope("PATCH", "/jobs/secret-id/cancel")[1] == "/jobs/{job_id}/cancel"


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ([(b"authorization", b"Bearer abc")], "abc"),
        ([(b"authorization", b"bearer   abc  ")], "abc"),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Bearer")], None),
        ([], None),
    ],
)
def test_the_key_is_read_from_a_bearer_authorization_header(
    headers: list[tuple[bytes, bytes]], token: str | None
) -> None:
    assert auth.bearer(headers) == token


# --------------------------------------------------------------------------------------- browsers


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", (), True),
        ("http://example.com", "example.com:80", (), True),
        ("https://example.com", "example.com:443", (), True),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", (), False),
        ("https://evil.example", "127.0.0.1:8000", (), False),
        ("null", "127.0.0.1:8000", (), False),
        ("http://127.0.0.1:8000", None, (), False),
        ("https://ops.example.com", "127.0.0.1:8000", ("https://ops.example.com",), True),
        ("HTTPS://OPS.EXAMPLE.COM/", "127.0.0.1:8000", ("https://ops.example.com",), True),
    ],
)
def test_an_origin_is_allowed_when_it_is_the_apis_own_or_listed(
    origin: str, host: str | None, allowed: tuple[str, ...], ok: bool
) -> None:
    assert auth.origin_allowed(origin, host, allowed) is ok


def test_the_token_parameter_is_taken_out_of_a_websockets_query_string() -> None:
    scope: dict[str, Any] = {"query_string": b"after=5&token=tq_abc&status=failed"}

    assert auth.take_token(scope) == "tq_abc"
    assert scope["query_string"] == b"after=5&status=failed"
    assert auth.take_token({"query_string": b"after=5"}) is None


def test_a_key_subprotocol_is_taken_out_of_the_handshake_and_decoded() -> None:
    key = "tq_0123456789ab_" + "x/y+z=" * 8  # any text, even characters that are not token characters
    encoded = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
    offered = f"taskq, taskq.bearer.{encoded}".encode()
    scope: dict[str, Any] = {
        "subprotocols": ["taskq", f"taskq.bearer.{encoded}"],
        "headers": [(b"host", b"x"), (b"sec-websocket-protocol", offered)],
    }

    taken = auth.take_protocol_key(scope)

    assert taken == encoded
    assert auth.decode_protocol_key(taken) == key
    assert scope["subprotocols"] == ["taskq"]
    assert scope["headers"] == [(b"host", b"x"), (b"sec-websocket-protocol", b"taskq")]
    assert auth.take_protocol_key({"subprotocols": ["taskq"], "headers": []}) is None
    with pytest.raises(Unauthenticated):
        auth.decode_protocol_key("%%%")


# ------------------------------------------------------------------------------------------- the cache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_key_is_asked_of_the_database_again_only_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    made = credentials.new_key()
    stored = {"revoked": False}
    reads: list[str] = []

    async def find_api_key(_: object, key_id: str) -> gateway.KeyCheck | None:
        reads.append(key_id)
        return gateway.KeyCheck(made.key_id, ["read"], made.salt, made.digest, stored["revoked"])

    monkeypatch.setattr(gateway, "find_api_key", find_api_key)
    clock = Clock()
    ring = auth.KeyRing(load({"TASKQ_AUTH": "on"}), ttl=1.0, clock=clock)
    ring._pool = object()  # type: ignore[assignment]  # never used: the read above is replaced

    async def scenario() -> list[frozenset[str] | None]:
        seen = [await ring.scopes_of(made.key)]
        stored["revoked"] = True
        clock.now += 0.9
        seen.append(await ring.scopes_of(made.key))  # still the cached answer
        clock.now += 0.2
        seen.append(await ring.scopes_of(made.key))  # over the ttl: asked again, now revoked
        return seen

    assert asyncio.run(scenario()) == [frozenset({"read"}), frozenset({"read"}), None]
    assert reads == [made.key_id, made.key_id]


def test_the_bootstrap_key_has_every_scope_without_a_database() -> None:
    ring = auth.KeyRing(load({"TASKQ_BOOTSTRAP_KEY": "b" * 32}))

    assert asyncio.run(ring.scopes_of("b" * 32)) == credentials.ALL_SCOPES
    assert not ring.follows_database
    assert not ring.open


@pytest.mark.parametrize(
    ("env", "follows", "open_at_start"),
    [
        ({}, True, False),
        ({"TASKQ_HOST": "0.0.0.0"}, False, False),
        ({"TASKQ_AUTH": "on"}, False, False),
        ({"TASKQ_AUTH": "off", "TASKQ_HOST": "0.0.0.0"}, False, True),
    ],
)
def test_only_auto_on_loopback_without_a_bootstrap_key_asks_the_database_whether_keys_are_needed(
    env: dict[str, str], follows: bool, open_at_start: bool
) -> None:
    ring = auth.KeyRing(load(env))

    assert (ring.follows_database, ring.open) == (follows, open_at_start)


# ------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "LOCALHOST"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_a_bootstrap_key_is_a_key_or_a_long_secret_and_is_never_shown() -> None:
    key = credentials.new_key().key
    assert load({"TASKQ_BOOTSTRAP_KEY": key}).bootstrap_key == Secret(key)
    assert load({"TASKQ_BOOTSTRAP_KEY": "s" * 32}).bootstrap_key == Secret("s" * 32)
    assert "s" * 32 not in repr(load({"TASKQ_BOOTSTRAP_KEY": "s" * 32}))

    with pytest.raises(SettingsError) as raised:
        load({"TASKQ_BOOTSTRAP_KEY": "short-secret"})
    assert "short-secret" not in str(raised.value)
    assert "TASKQ_BOOTSTRAP_KEY" in str(raised.value)


@pytest.mark.parametrize(("raw", "mode"), [("auto", "auto"), (" ON ", "on"), ("off", "off")])
def test_auth_modes(raw: str, mode: str) -> None:
    assert load({"TASKQ_AUTH": raw}).auth == mode


def test_an_unknown_auth_mode_is_refused() -> None:
    with pytest.raises(SettingsError, match="expected TASKQ_AUTH to be one of auto, on, off, got 'yes'"):
        load({"TASKQ_AUTH": "yes"})


def test_allowed_origins_are_normalised_and_checked() -> None:
    assert load({"TASKQ_ALLOWED_ORIGINS": "https://A.example.com/, http://b:8080"}).allowed_origins == (
        "https://a.example.com",
        "http://b:8080",
    )
    with pytest.raises(SettingsError):
        load({"TASKQ_ALLOWED_ORIGINS": "https://a.example.com/path"})
