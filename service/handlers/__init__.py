"""The job handler registry: job type -> `async def handle(ctx, payload) -> result` (or a plain `def`).

Handlers run inside a worker process, one process per attempt. Register one with the `job_type`
decorator in any module and name that module in `TASKQ_HANDLERS`:

    from service.handlers import JobContext, PermanentError, job_type

    @job_type("resize_image")
    async def resize(ctx: JobContext, payload: dict) -> dict:
        ctx.log.info("resizing %s", payload["url"])
        ...
        return {"width": 640}

Raise `PermanentError` for failures that retrying cannot fix; any other exception is retried.

A plain `def` handler works too: the worker calls it directly (the worker is a process of its own, so
blocking it blocks nothing else, and a timeout still kills it), as a Celery task would be called.

`@job_type("name", reuse_worker=True)` lets the supervisor run the next attempt of this type in the same
worker process once one has ended cleanly, instead of a fresh fork each time (a fork, its copy-on-write
faults and its exit cost a few milliseconds of CPU, far more than a tiny job itself). Opt in only for
handlers that leave no state behind: the process, its modules and globals carry over between attempts.
A worker is retired after `REUSE_LIMIT` attempts, and never reused after a kill, a crash or a timeout.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# A coroutine function, or a plain function whose return value is the result.
Handler = Callable[["JobContext", dict[str, Any]], Any]

_REGISTRY: dict[str, Handler] = {}
REUSE_LIMIT = 1000  # attempts one reused worker runs before it is retired and replaced by a fresh fork
_REUSES_WORKER: set[str] = set()


class PermanentError(Exception):
    """A failure that retrying cannot fix: the job fails at once, whatever attempts are left."""


class UnknownHandlerModule(ImportError):
    """A module named in TASKQ_HANDLERS could not be imported."""


@dataclass(frozen=True)
class JobContext:
    job_id: str
    attempt: int
    log: logging.Logger  # lines land in GET /jobs/{job_id}/logs with event "log"


def job_type(name: str, *, reuse_worker: bool = False) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if name in _REGISTRY and _REGISTRY[name] is not handler:
            raise ValueError(f"job type {name!r} is registered twice")
        _REGISTRY[name] = handler
        if reuse_worker:
            _REUSES_WORKER.add(name)
        return handler

    return register


BUILTIN = "service.handlers.builtin"


def load(modules: Iterable[str] = ()) -> None:
    """Import the user's modules (their import registers their types), or the built-in demo types when
    none is named. The demo types have knobs that burn CPU, hold memory or flood output: a deployment
    that names its own modules does not expose them (it may name `service.handlers.builtin` too)."""
    modules = tuple(modules) or (BUILTIN,)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UnknownHandlerModule(f"cannot import handler module {module!r} (TASKQ_HANDLERS): {exc}") from exc


def get(name: str) -> Handler | None:
    return _REGISTRY.get(name)


def reuses_worker(name: str) -> bool:
    return name in _REUSES_WORKER


_known: tuple[int, frozenset[str]] = (0, frozenset())


def known_types() -> frozenset[str]:
    """The registered type names, for a membership test on every submission. Rebuilt only when the
    registry has grown (types are only ever added), not sorted and copied per request."""
    global _known
    if _known[0] != len(_REGISTRY):
        _known = (len(_REGISTRY), frozenset(_REGISTRY))
    return _known[1]
