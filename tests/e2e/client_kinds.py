"""Both clients behind one blocking face, so each e2e test of the client runs for `Client` and for
`AsyncClient` without being written twice.

`blocking(AsyncClient(...))` runs every coroutine the async client returns on a private event loop and
turns its async iterators into lazy blocking ones (one `__anext__` per `next`): the async client really
runs, over its own httpx.AsyncClient and asyncio WebSockets, just driven from a test that blocks.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from taskq import AsyncClient, Client


class Blocking:
    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def _wrap(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            return self._wrap(self._loop.run_until_complete(value))
        if hasattr(value, "__anext__"):
            return self._iterate(value)
        if type(value).__name__ == "AsyncDag":
            return Blocking(value, self._loop)
        return value

    def _iterate(self, iterator: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._loop.run_until_complete(iterator.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._loop.run_until_complete(iterator.aclose())

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._wrap(attribute(*args, **kwargs))

        return call


def make_client(kind: str, url: str, **options: Any) -> tuple[Any, Callable[[], None]]:
    """(client, close) for kind "sync" or "async"; the async one lives on its own event loop."""
    if kind == "sync":
        client = Client(url, **options)
        return client, client.close
    loop = asyncio.new_event_loop()

    async def build() -> AsyncClient:  # httpx.AsyncClient wants to be made inside a running loop
        return AsyncClient(url, **options)

    async_client = loop.run_until_complete(build())

    def close() -> None:
        loop.run_until_complete(async_client.aclose())
        loop.close()

    return Blocking(async_client, loop), close
