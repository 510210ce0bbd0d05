"""The service's side of the job handler registry: loading the user's modules (`TASKQ_HANDLERS`) and
looking types up. The registry itself, the `job_type` decorator, `JobContext` and `PermanentError` are
the public package's (`taskq.registry`, `taskq.context`), so handler code imports them from `taskq`:

    from taskq import JobContext, PermanentError, job_type

    @job_type("resize_image", timeout=60, retry={"max_attempts": 5})
    async def resize(ctx: JobContext, payload: Resize) -> dict:
        ctx.log.info("resizing %s", payload.url)
        ...
        return {"width": 640}

They are re-exported here (`from service.handlers import job_type` keeps working): one class each,
whichever name is used. Handlers run inside a worker process, one process per attempt.

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
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mypy checks the package as `service.taskq`; at run time it is imported as `taskq`
    from service.taskq.context import JobContext
    from service.taskq.registry import REGISTRY, InvalidJobType, JobType, PayloadMismatch, PermanentError, job_type
else:
    from taskq.context import JobContext
    from taskq.registry import REGISTRY, InvalidJobType, JobType, PayloadMismatch, PermanentError, job_type

__all__ = [
    "BUILTIN",
    "REUSE_LIMIT",
    "Handler",
    "JobContext",
    "JobType",
    "PayloadMismatch",
    "PermanentError",
    "UnknownHandlerModule",
    "get",
    "job_type",
    "known_types",
    "load",
    "reuses_worker",
    "spec",
]

# A coroutine function, or a plain function whose return value is the result.
Handler = Callable[[JobContext, Any], Any]

REUSE_LIMIT = 1000  # attempts one reused worker runs before it is retired and replaced by a fresh fork


class UnknownHandlerModule(ImportError):
    """A module named in TASKQ_HANDLERS could not be imported."""


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
        except InvalidJobType as exc:
            raise UnknownHandlerModule(f"cannot load handler module {module!r} (TASKQ_HANDLERS): {exc}") from exc


def spec(name: str) -> JobType[..., Any] | None:
    """The registered type: its handler, defaults and payload type."""
    return REGISTRY.get(name)


def get(name: str) -> Handler | None:
    registered = REGISTRY.get(name)
    return None if registered is None else registered.handler


def reuses_worker(name: str) -> bool:
    registered = REGISTRY.get(name)
    return registered is not None and registered.reuse_worker


_known: tuple[int, frozenset[str]] = (0, frozenset())


def known_types() -> frozenset[str]:
    """The registered type names, for a membership test on every submission. Rebuilt only when the
    registry has grown (types are only ever added), not sorted and copied per request."""
    global _known
    if _known[0] != len(REGISTRY):
        _known = (len(REGISTRY), frozenset(REGISTRY))
    return _known[1]
