"""ASGI layers in front of Litestar: the submit fast path and the HTTP metrics middleware."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

from service.api import openapi, problems
from service.api.intake import refuse_while_draining, submit_many, submit_one
from service.api.schemas import require_json
from service.telemetry import Telemetry


def http_metrics(telemetry: Telemetry) -> Callable[[ASGIApp], ASGIApp]:
    """Counts and times every HTTP request by method, route template and status."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def remember_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, remember_status)
            finally:
                handler = scope.get("route_handler")
                route = next(iter(handler.paths), "?") if handler is not None else "unmatched"
                method = scope.get("method", "?")
                telemetry.add("taskq_http_requests", method=method, route=route, status=str(status))
                telemetry.record(
                    "taskq_http_request_duration", time.perf_counter() - started, method=method, route=route
                )

        return measured

    return middleware


_encode = msgspec.json.Encoder().encode  # what Litestar's encode_json produces for these bodies


_JSON_TYPE = (b"content-type", b"application/json")


_PROBLEM_TYPE = (b"content-type", problems.PROBLEM_JSON.encode())


def fast_submit(app: Litestar, max_body_bytes: int) -> ASGIApp:
    """`POST /jobs` and `POST /jobs/batch` served in front of Litestar; every other request goes to it,
    except OPTIONS, answered here from the documented routes (`openapi.allowed_methods`).

    Litestar's routing, dependency injection, `Request`/`Response` objects and its middleware stack cost
    more CPU per submission than the submission's own work (about a third of the API process's CPU under
    load, measured with py-spy). The two hot routes are answered here with the same functions the
    Litestar handlers call (`submit_one`, `submit_many`), the same problem details (`problems.problem_of`
    picks the handler Litestar would), the same status codes and headers, the same body-size limit (413),
    the draining check first (503), and the same HTTP metrics. The Litestar handlers stay registered, so
    the OpenAPI document describes both routes as before."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] == "OPTIONS":
            methods = openapi.allowed_methods(app.openapi_schema.to_schema(), scope["path"])
            if methods is not None:
                # Litestar's own answer named only the first method registered on a path.
                allow = (b"allow", ", ".join(methods).encode())
                await send({"type": "http.response.start", "status": 204, "headers": [allow]})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST" or scope["path"] not in _FAST_ROUTES:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        state = app.state
        status = 500
        try:
            try:
                refuse_while_draining(state)
                idempotency_key, body = await _read_request(scope, receive, max_body_bytes)
                if path == "/jobs":
                    status, view = await submit_one(state, body, idempotency_key)
                    content = _encode(view)
                else:
                    status, answer = await submit_many(state, body)
                    content = _encode(answer)
                headers = [_JSON_TYPE, (b"content-length", str(len(content)).encode())]
            except Exception as exc:
                status, problem, extra = problems.problem_of(exc, "POST", path)
                content = _encode(problem)
                headers = [
                    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (extra or {}).items()
                ]
                headers += [_PROBLEM_TYPE, (b"content-length", str(len(content)).encode())]
            start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
            await send(start)
            end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": content, "more_body": False}
            await send(end)
        finally:
            telemetry: Telemetry = state.telemetry
            telemetry.add("taskq_http_requests", method="POST", route=path, status=str(status))
            telemetry.record("taskq_http_request_duration", time.perf_counter() - started, method="POST", route=path)

    return asgi


_FAST_ROUTES = frozenset({"/jobs", "/jobs/batch"})


async def _read_request(scope: Scope, receive: Receive, max_body_bytes: int) -> tuple[str | None, bytes]:
    """The Idempotency-Key header and the body, with the checks the Litestar handlers make, in their order:
    the content type (`require_json`), then the limits that Litestar's `Request.body()` enforces."""
    idempotency_key: str | None = None
    announced: bytes | None = None
    content_type: str | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            announced = value
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"idempotency-key" and idempotency_key is None:
            idempotency_key = value.decode("latin-1")
    require_json(content_type)
    if announced is not None:
        try:
            length = int(announced)
        except ValueError:
            raise ClientException(f"Invalid content-length: {announced.decode('latin-1')!r}") from None
        if length > max_body_bytes:
            raise RequestEntityTooLarge
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                received += len(chunk)
                if received > max_body_bytes:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
    return idempotency_key, chunks[0] if len(chunks) == 1 else b"".join(chunks)
