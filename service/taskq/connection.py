"""The default connection: where `send_email.defer(...)` and `ctx.submit(...)` submit when no client is
given. From `taskq.configure(url=..., api_key=...)` if called, else TASKQ_URL and TASKQ_API_KEY, else the
local default (http://127.0.0.1:8000).

Inside a worker the service sets TASKQ_URL to its own API and TASKQ_API_KEY to a per-run credential that
may only submit, so a handler's `defer` and `ctx.submit` reach the service that runs it.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the client (httpx, websockets) is imported on first use: see taskq/__init__.py
    from .client import AsyncClient, Client

DEFAULT_URL = "http://127.0.0.1:8000"

_lock = threading.Lock()
_configured: dict[str, str | None] = {}
_client: Client | None = None


def configure(url: str | None = None, api_key: str | None = None) -> None:
    """Set the default connection for this process; what is left None falls back to TASKQ_URL and
    TASKQ_API_KEY (so `configure()` undoes an earlier call)."""
    global _client
    with _lock:
        _configured.clear()
        _configured.update(url=url, api_key=api_key)
        if _client is not None:
            _client.close()
            _client = None


def settings() -> tuple[str, str | None]:
    """(url, api_key) of the default connection, as configured now."""
    url = _configured.get("url") or os.environ.get("TASKQ_URL") or DEFAULT_URL
    return url, _configured.get("api_key") or os.environ.get("TASKQ_API_KEY") or None


def default_client() -> Client:
    """One blocking client per process, made on first use (never in a parent that forks: the zygote
    makes none) and closed at exit."""
    global _client
    from .client import Client

    with _lock:
        if _client is None:
            url, api_key = settings()
            _client = Client(url, api_key)
            atexit.register(_client.close)
        return _client


def async_client() -> AsyncClient:
    """A new asyncio client on the default connection, for `async with`: an asyncio client belongs to
    the event loop it first runs on, so none is shared."""
    from .client import AsyncClient

    url, api_key = settings()
    return AsyncClient(url, api_key)
