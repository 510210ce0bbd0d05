"""Authentication in front of the whole API: the one place that decides who may call which route.

An ASGI layer around everything uvicorn serves (the submit fast path and Litestar behind it, the
WebSocket stream included), so no route can be reached around it. `ROUTES` maps each (method, route) to
the scope it needs; a route missing from the map needs `admin`, so a new route is never silently open
(tests/unit/test_auth.py fails until it is listed). Keys are checked through `KeyRing`, which remembers
a database answer for at most `TTL_SECONDS`: a revoke on any node or from the CLI takes effect within
that time everywhere, and a request with a known key costs a dict lookup and one hash comparison.
Once the caller is known (its key, or its address while keys are off), the layer also spends one token
of its rate limit (`service/api/limits.py`), so a refused request never reaches a route either.

Browsers: a WebSocket handshake, and a request with an unsafe method while keys are not required, is
refused when its `Origin` is neither the API's own (the Host header) nor in TASKQ_ALLOWED_ORIGINS.
Requests without an Origin (curl, SDKs, Prometheus) are judged by their key alone. A WebSocket's key
may come as the Authorization header, a `?token=` parameter or a `taskq.bearer.<base64url>` subprotocol
(what the web console sends); the last two are taken out of the scope before anything can log them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
import msgspec
from litestar.types import ASGIApp

from service import credentials, worker_access
from service.api import limits, problems
from service.credentials import ADMIN, READ, SUBMIT
from service.errors import MissingScope, OriginNotAllowed, TaskqError, Unauthenticated
from service.settings import Rate, Settings, is_loopback
from service.store import gateway

log = logging.getLogger("taskq.api.auth")

TTL_SECONDS = 1.0
CACHE_LIMIT = 10_000  # key ids remembered; beyond it the cache starts over (a flood of made-up ids)
OPEN = None
# Any valid key, whatever its scopes: for the route that tells a key what it may do (the console asks
# it before drawing buttons), which a key of any single scope must be able to reach.
ANY_KEY = "any key"
# A browser cannot set headers on a WebSocket handshake, and a key in the URL ends up in histories and
# proxy logs. The console offers its key as one of the handshake's subprotocols instead, base64url so any
# key is a valid token (Kubernetes does the same with `base64url.bearer.authorization.k8s.io.`). The
# service selects only `taskq`, so the key is never echoed back.
KEY_PROTOCOL = "taskq.bearer."

# (method, route) -> the scope it needs, or OPEN. "WS" is the WebSocket handshake.
ROUTES: dict[tuple[str, str], str | None] = {
    ("POST", "/jobs"): SUBMIT,
    ("POST", "/jobs/batch"): SUBMIT,
    ("GET", "/jobs"): READ,
    ("GET", "/jobs/{job_id}"): READ,
    ("GET", "/jobs/{job_id}/logs"): READ,
    ("GET", "/jobs/{job_id}/explain"): READ,
    ("GET", "/stats"): READ,
    ("WS", "/jobs/stream"): READ,
    ("PATCH", "/jobs/{job_id}/cancel"): ADMIN,
    ("POST", "/jobs/{job_id}/retry"): ADMIN,
    ("GET", "/dlq"): ADMIN,
    ("POST", "/keys"): ADMIN,
    ("GET", "/keys"): ADMIN,
    ("DELETE", "/keys/{key_id}"): ADMIN,
    ("GET", "/auth/whoami"): ANY_KEY,
    # The console's own reads beyond the job routes (service/api/console.py).
    ("GET", "/jobs/{job_id}/graph"): READ,
    ("GET", "/stats/throughput"): READ,
    # The console's static files: the page must load before it can ask for a key. They hold no data.
    ("GET", "/ui"): OPEN,
    ("GET", "/ui/{version}/{file}"): OPEN,
    # Schedules and type controls: reading them is reading; changing them decides what runs and when.
    ("GET", "/schedules"): READ,
    ("GET", "/schedules/{schedule_id}"): READ,
    ("POST", "/schedules"): ADMIN,
    ("PATCH", "/schedules/{schedule_id}"): ADMIN,
    ("DELETE", "/schedules/{schedule_id}"): ADMIN,
    ("GET", "/types"): READ,
    ("PATCH", "/types/{job_type}"): ADMIN,
    # Probes and the scrape target carry no job data (see README "Security"); orchestrators and
    # Prometheus call them without credentials.
    ("GET", "/health/live"): OPEN,
    ("GET", "/health/ready"): OPEN,
    ("GET", "/metrics"): OPEN,
    # The API's description is public knowledge (it is in the repository).
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/schema"): OPEN,
    ("GET", "/schema/{page}"): OPEN,
    ("GET", "/schema/{page}/{file}"): OPEN,
}


def _compile(routes: dict[tuple[str, str], str | None]) -> dict[tuple[str, int], list[tuple[tuple[str, ...], str]]]:
    """Templates by (method, number of segments), those with more literal segments first, so that
    `/jobs/batch` wins over `/jobs/{job_id}`."""
    table: dict[tuple[str, int], list[tuple[tuple[str, ...], str]]] = {}
    for method, route in routes:
        parts = tuple(route.strip("/").split("/"))
        table.setdefault((method, len(parts)), []).append((parts, route))
    for candidates in table.values():
        candidates.sort(key=lambda c: -sum(not p.startswith("{") for p in c[0]))
    return table


_TABLE = _compile(ROUTES)


def route_of(method: str, path: str) -> str | None:
    """The route template a request path falls under, or None when no route has it."""
    if method == "HEAD":
        method = "GET"
    parts = path.strip("/").split("/")
    for template, route in _TABLE.get((method, len(parts)), ()):
        if all(t == p or (t.startswith("{") and p) for t, p in zip(template, parts, strict=True)):
            return route
    return None


def required_scope(method: str, path: str) -> tuple[str | None, str]:
    """(scope needed or OPEN, the route as shown in a 403). Unknown routes need admin: deny by default."""
    route = route_of(method, path)
    if route is None:
        return ADMIN, path
    return ROUTES["GET" if method == "HEAD" else method, route], route


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return None


def origin_allowed(origin: str, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Same origin (Origin's host:port is the Host header) or listed. An opaque origin ("null": a
    sandboxed frame, a file:// page) is never the API's own."""
    normalized = origin.strip().lower().rstrip("/")
    if normalized in allowed:
        return True
    parts = urlsplit(normalized)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc or host is None:
        return False
    default = {"http": 80, "ws": 80, "https": 443, "wss": 443}[parts.scheme]
    own, there = host.strip().lower(), parts.netloc
    # "example.com" and "example.com:80" name the same origin over http
    return there == own or there == f"{own}:{default}" or own == f"{there}:{default}"


def take_token(scope: Scope) -> str | None:
    """The `token` query parameter of a WebSocket handshake, removed from the scope: what comes after
    (uvicorn's log line of the handshake, Litestar's query parsing) never sees it."""
    raw: bytes = scope.get("query_string", b"")
    if b"token=" not in raw:
        return None
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    token = next((v for k, v in pairs if k == "token"), None)
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "token"]).encode("latin-1")
    return token or None


def take_protocol_key(scope: Scope) -> str | None:
    """The key a WebSocket handshake offers as a `taskq.bearer.<base64url>` subprotocol (still encoded),
    removed from the scope's subprotocols and from its Sec-WebSocket-Protocol header, so that nothing
    after this layer (the handler, a log line) sees it."""
    offered: list[str] = scope.get("subprotocols") or []
    found = [p for p in offered if p.startswith(KEY_PROTOCOL)]
    if not found:
        return None
    kept = [p for p in offered if not p.startswith(KEY_PROTOCOL)]
    scope["subprotocols"] = kept
    headers = [(n, v) for n, v in scope["headers"] if n != b"sec-websocket-protocol"]
    if kept:
        headers.append((b"sec-websocket-protocol", ", ".join(kept).encode("latin-1")))
    scope["headers"] = headers
    return found[0][len(KEY_PROTOCOL) :]


def decode_protocol_key(encoded: str) -> str:
    """The key of a `taskq.bearer.` subprotocol; 401 when it is not base64url of UTF-8 text."""
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        raise Unauthenticated.because(f"the {KEY_PROTOCOL} subprotocol does not hold base64url text") from None


# ------------------------------------------------------------------------------------------------ the keys


class Verified(msgspec.Struct, frozen=True):
    """A valid key: whom its requests count against, its scopes, and its own rate limits (None: the
    node's)."""

    caller: str
    scopes: frozenset[str]
    rates: dict[str, Rate | None]


_BOOTSTRAP = Verified("bootstrap key", credentials.ALL_SCOPES, {})
# The root's per-run credential for its own workers (service/worker_access.py): `ctx.submit` and
# `defer` inside a handler, so submit only.
_WORKERS = Verified("workers", frozenset({SUBMIT}), {})


@functools.lru_cache(maxsize=4096)
def _rate(text: str | None) -> Rate | None:
    return None if text is None else Rate.parse(text)


class KeyRing:
    """Which keys are valid, and whether keys are required at all, from the database at most `ttl` old.

    `open` is a plain attribute so the request path reads one boolean when keys are not required. With
    TASKQ_AUTH=auto on a loopback address and no bootstrap key it follows "does any key exist", refreshed
    by a background task every half `ttl`; otherwise it is fixed at start."""

    def __init__(
        self,
        settings: Settings,
        *,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        bootstrap = settings.bootstrap_key.value if settings.bootstrap_key is not None else None
        self._bootstrap = bootstrap.encode() if bootstrap is not None else None
        workers = worker_access.token()
        self._workers = workers.encode() if workers is not None else None
        self.mode = settings.auth
        # Whether keys are required depends on the database only in this one case.
        self.follows_database = settings.auth == "auto" and bootstrap is None and is_loopback(settings.host)
        self.open = settings.auth == "off"  # a follower starts closed until its first answer
        self._pool: asyncpg.Pool | None = None
        self._cache: dict[str, tuple[float, gateway.KeyCheck | None]] = {}
        self._loading: dict[str, asyncio.Future[gateway.KeyCheck | None]] = {}
        self._refresher: asyncio.Task[None] | None = None

    async def start(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        if self.follows_database:
            await self.refresh()
            self._refresher = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    async def refresh(self) -> None:
        assert self._pool is not None
        self.open = not await gateway.any_api_key(self._pool)

    async def _refresh_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.ttl / 2)
            try:
                await self.refresh()
                failing = False
            except Exception as exc:  # the last answer stands until the database answers again
                if not failing:
                    log.warning("cannot tell whether API keys exist (%s); keeping the last answer", exc)
                failing = True

    def forget(self, key_id: str) -> None:
        """This node's own key changes apply at once here; other nodes see them within `ttl`."""
        self._cache.pop(key_id, None)
        if self.follows_database:
            self.open = False  # a key was just created or revoked: keys exist

    async def scopes_of(self, token: str) -> frozenset[str] | None:
        """The scopes of a presented key, or None when it is not a valid key."""
        verified = await self.verify(token)
        return None if verified is None else verified.scopes

    async def verify(self, token: str) -> Verified | None:
        """Who presents this key and what it may do, or None when it is not a valid key."""
        if self._bootstrap is not None and hmac.compare_digest(token.encode(), self._bootstrap):
            return _BOOTSTRAP
        if self._workers is not None and hmac.compare_digest(token.encode(), self._workers):
            return _WORKERS
        parsed = credentials.parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        entry = self._cache.get(key_id)
        if entry is not None and entry[0] > self.clock():
            found = entry[1]
        else:
            found = await self._load(key_id)
        if found is None or found.revoked or not credentials.matches(secret, found.salt, found.hash):
            return None
        rates = {limits.SUBMIT: _rate(found.rate_limit_submit), limits.REQUESTS: _rate(found.rate_limit_requests)}
        return Verified(f"key {key_id}", frozenset(found.scopes), rates)

    async def _load(self, key_id: str) -> gateway.KeyCheck | None:
        """One database read per key id at a time: the requests that arrive while it runs share it."""
        pending = self._loading.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        assert self._pool is not None
        future: asyncio.Future[gateway.KeyCheck | None] = asyncio.get_running_loop().create_future()
        self._loading[key_id] = future
        try:
            found = await gateway.find_api_key(self._pool, key_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        else:
            future.set_result(found)
        finally:
            del self._loading[key_id]
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key_id] = (self.clock() + self.ttl, found)
        return found


# -------------------------------------------------------------------------------------------- the layer

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_JSON_ONLY = frozenset({"/jobs", "/jobs/batch", "/keys"})  # bodies must be JSON: a form cannot post them
_encode = msgspec.json.Encoder().encode
# ASGI as this layer sees it: any scope type (lifespan too), any message. Litestar's TypedDicts describe
# only what Litestar itself is handed.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def guard(
    app: ASGIApp, ring: KeyRing, allowed_origins: tuple[str, ...], limiter: limits.Limiter | None = None
) -> ASGIApp:
    """`app` behind the key check and the rate limits (see the module's docstring)."""
    inner = cast(Callable[[Scope, Receive, Send], Awaitable[None]], app)
    limited = limiter is not None and limiter.active

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (
            ring.open
            and not limited
            and kind == "http"
            and (scope["method"] in _SAFE_METHODS or scope["path"] in _JSON_ONLY)
        ):
            await inner(scope, receive, send)  # the common case with keys off: no header is looked at
            return
        if kind == "lifespan":
            await inner(scope, receive, send)
            return
        websocket = kind == "websocket"
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        method = "WS" if websocket else scope["method"]
        path: str = scope["path"]
        query_token = take_token(scope) if websocket else None
        protocol_key = take_protocol_key(scope) if websocket else None
        try:
            if websocket or (ring.open and method not in _SAFE_METHODS):
                origin = header(headers, b"origin")
                if origin is not None and not origin_allowed(origin, header(headers, b"host"), allowed_origins):
                    raise OriginNotAllowed.of(origin)
            caller: str | None = None
            rates: dict[str, Rate | None] = {}
            if not ring.open:
                needed, route = required_scope(method, path)
                if needed is not None:
                    token = bearer(headers) or query_token
                    if token is None and protocol_key is not None:
                        token = decode_protocol_key(protocol_key)
                    if token is None:
                        raise Unauthenticated.because("is missing; send Authorization: Bearer <key>")
                    verified = await ring.verify(token)
                    if verified is None:
                        raise Unauthenticated.because("the API key is not valid: unknown, revoked or mistyped")
                    if needed != ANY_KEY and needed not in verified.scopes:
                        raise MissingScope.needing(needed, method, route)
                    caller, rates = verified.caller, verified.rates
            elif limited:
                needed, _ = required_scope(method, path)
                if needed is not None:
                    client = scope.get("client")
                    caller = f"address {client[0]}" if client else "address unknown"
            if limiter is not None and caller is not None:
                submit = method == "POST" and path in ("/jobs", "/jobs/batch")
                kind = limits.SUBMIT if submit else limits.REQUESTS
                limiter.check(caller, kind, rates.get(kind))
        except Exception as exc:
            await _refuse(scope, receive, send, exc, method, path)
            return
        await inner(scope, receive, send)

    return cast(ASGIApp, asgi)


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: Exception, method: str, path: str) -> None:
    status, body, extra = problems.problem_of(exc, method, path)
    if not isinstance(exc, TaskqError) and status == 503:
        log.warning("cannot check an API key: %s", exc)
    content = _encode(body)
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()]
    headers += [(b"content-type", problems.PROBLEM_JSON.encode()), (b"content-length", str(len(content)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})
        return
    message = await receive()  # websocket.connect: the handshake request has arrived
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        # Denial response (ASGI spec; uvicorn implements it): the client sees 401/403 and the problem.
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": content, "more_body": False})
    else:  # a server without it answers a close before accept with 403
        await send({"type": "websocket.close", "code": 1008})
