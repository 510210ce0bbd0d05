"""The `/keys` routes (admin scope): create, list and revoke API keys; and `GET /auth/whoami` (any valid
key), which tells a key its own scopes.

Writing a key is not a job state change, so it does not go through the scheduler; the API writes the
`api_keys` table directly (tests/unit/test_house_rules.py allows exactly these store functions).
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.datastructures import State

from service import credentials
from service.api.auth import KeyRing, bearer
from service.api.schemas import CreatedKey, Identity, KeyRates, KeyView, decode_key_request, require_json
from service.api.submit import timestamp
from service.errors import InvalidRequest, KeyNotFound, Unauthenticated
from service.settings import Rate
from service.store import gateway

log = logging.getLogger("taskq.api.keys")


def rates_view(key: gateway.ApiKey) -> KeyRates | None:
    if key.rate_limit_submit is None and key.rate_limit_requests is None:
        return None
    return KeyRates(key.rate_limit_submit, key.rate_limit_requests)


def key_view(key: gateway.ApiKey) -> KeyView:
    created, revoked = timestamp(key.created_at) or "", timestamp(key.revoked_at)
    return KeyView(key.key_id, key.name, key.scopes, created, revoked, rates_view(key))


def checked_rate(raw: str | None, field: str) -> str | None:
    """A key's rate limit in its canonical spelling, or 422 naming the field."""
    if raw is None:
        return None
    try:
        return Rate.parse(raw).text
    except ValueError:
        raise InvalidRequest.field(field, "must be a rate such as 100/s, 6000/m or 10/h, optionally :burst") from None


async def create_key(
    pool: Any, name: str, scopes: list[str], rates: tuple[str | None, str | None] = (None, None)
) -> tuple[gateway.ApiKey, str]:
    """Stores a new key and returns it with its full text, which exists nowhere else afterwards."""
    while True:
        made = credentials.new_key()
        try:
            stored = await gateway.insert_api_key(pool, made.key_id, name, scopes, made.salt, made.digest, rates)
        except gateway.DuplicateKeyId:
            continue
        return stored, made.key


@post("/keys", status_code=201, summary="Create an API key (its secret is shown only here)", tags=["keys"])
async def post_key(request: Request[Any, Any, Any], state: State) -> Response[CreatedKey]:
    require_json(request.headers.get("content-type"))
    body = decode_key_request(await request.body())
    if (problem := credentials.name_problem(body.name)) is not None:
        raise InvalidRequest.field("name", problem)
    if (problem := credentials.scope_problem(body.scopes)) is not None:
        raise InvalidRequest.field("scopes", problem)
    limits = body.rate_limits or KeyRates()
    rates = (
        checked_rate(limits.submit, "rate_limits.submit"),
        checked_rate(limits.requests, "rate_limits.requests"),
    )
    stored, key = await create_key(state.pool, body.name, credentials.ordered(body.scopes), rates)
    ring: KeyRing = state.keyring
    ring.forget(stored.key_id)
    log.info("API key %s (%s) created with scopes %s", stored.key_id, stored.name, ",".join(stored.scopes))
    created = timestamp(stored.created_at) or ""
    view = CreatedKey(stored.key_id, stored.name, stored.scopes, created, key, rates_view(stored))
    return Response(view, status_code=201)


@get("/keys", summary="List API keys, without their secrets", tags=["keys"])
async def list_keys(state: State) -> list[KeyView]:
    return [key_view(k) for k in await gateway.list_api_keys(state.pool)]


@delete("/keys/{key_id:str}", status_code=204, summary="Revoke an API key", tags=["keys"])
async def delete_key(key_id: str, state: State) -> None:
    """Every node refuses the key within a second."""
    if not credentials.KEY_ID.match(key_id):  # also keeps a NUL away from PostgreSQL
        raise KeyNotFound(f"no API key has id {key_id!r}")
    revoked = await gateway.revoke_api_key(state.pool, key_id)
    if revoked is None:
        raise KeyNotFound(f"no API key has id {key_id!r}")
    ring: KeyRing = state.keyring
    ring.forget(key_id)
    log.info("API key %s (%s) revoked", key_id, revoked.name)


@get("/auth/whoami", summary="The caller's own scopes", tags=["keys"])
async def whoami(request: Request[Any, Any, Any], state: State) -> Identity:
    """Any valid key may ask (the guard has checked it); the console hides the actions a key lacks the
    scope for. The guard does not hand its verdict on, so the key is looked up again: a cached dict
    lookup and one hash comparison."""
    ring: KeyRing = state.keyring
    if ring.open:
        return Identity(auth_required=False, caller=None, scopes=credentials.ordered(credentials.ALL_SCOPES))
    token = bearer(list(request.scope["headers"]))
    verified = await ring.verify(token) if token is not None else None
    if verified is None:  # revoked between the guard's check and this one
        raise Unauthenticated.because("the API key is not valid: unknown, revoked or mistyped")
    return Identity(auth_required=True, caller=verified.caller, scopes=credentials.ordered(verified.scopes))
