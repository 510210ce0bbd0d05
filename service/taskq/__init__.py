"""taskq's Python package: the client (`from taskq import Client, AsyncClient`) and the handler API
(`from taskq import job_type, JobContext, PermanentError`; `taskq.testing` runs handlers in a test).

The code lives in the repository's `service/taskq` and is installed as the top-level package `taskq`
(see pyproject.toml); it imports nothing from the service, so it runs wherever httpx, websockets and
msgspec do. The service's handler registry (`service.handlers`) is this package's.
"""

if __name__ != "taskq":
    # In a checkout, service/taskq is also reachable as `service.taskq`: refuse that name, so that the
    # client's classes (and its errors, which callers catch) exist once.
    raise ImportError(f"import the client as `taskq`, not `{__name__}`")

from typing import TYPE_CHECKING, Any

from .connection import configure
from .context import JobContext
from .errors import (
    Conflict,
    ConnectionFailed,
    Forbidden,
    Invalid,
    NotFound,
    TaskqError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from .models import (
    Accepted,
    Attempt,
    Event,
    Gap,
    Job,
    JobSpec,
    LogLine,
    Progress,
    Resources,
    RetryConfig,
    Schedule,
    Stats,
    TypeControls,
)
from .registry import Deferral, JobType, PayloadMismatch, PermanentError, job_type

__all__ = [
    "Accepted",
    "AsyncClient",
    "AsyncDag",
    "Attempt",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Dag",
    "Deferral",
    "Event",
    "Forbidden",
    "Gap",
    "Invalid",
    "Job",
    "JobContext",
    "JobSpec",
    "JobType",
    "LogLine",
    "NotFound",
    "PayloadMismatch",
    "PermanentError",
    "Progress",
    "Resources",
    "RetryConfig",
    "Schedule",
    "Stats",
    "TaskqError",
    "TooManyRequests",
    "TypeControls",
    "Unauthorized",
    "Unavailable",
    "configure",
    "job_type",
]


if TYPE_CHECKING:
    from .client import AsyncClient, AsyncDag, Client, Dag

_CLIENT_NAMES = frozenset({"AsyncClient", "AsyncDag", "Client", "Dag"})


def __getattr__(name: str) -> Any:
    """The client classes, imported on first use (PEP 562). A worker imports this package for the handler
    API, and the service's zygote forks every worker from a process that has: httpx and websockets
    there would double the interpreter's memory, and a fork copies its page tables (measured: 0.2 ms
    more per fork in the zygote, 0.3 ms more in each forked worker)."""
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'taskq' has no attribute {name!r}")
