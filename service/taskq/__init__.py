"""taskq's Python client: `from taskq import Client, AsyncClient`.

The code lives in the repository's `service/taskq` and is installed as the top-level package `taskq`
(see pyproject.toml); it imports nothing from the service, so it runs wherever httpx, websockets and
msgspec do.
"""

if __name__ != "taskq":
    # In a checkout, service/taskq is also reachable as `service.taskq`: refuse that name, so that the
    # client's classes (and its errors, which callers catch) exist once.
    raise ImportError(f"import the client as `taskq`, not `{__name__}`")

from .client import AsyncClient, AsyncDag, Client, Dag
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
    JobType,
    LogLine,
    Resources,
    RetryConfig,
    Schedule,
    Stats,
)

__all__ = [
    "Accepted",
    "AsyncClient",
    "AsyncDag",
    "Attempt",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Dag",
    "Event",
    "Forbidden",
    "Gap",
    "Invalid",
    "Job",
    "JobSpec",
    "JobType",
    "LogLine",
    "NotFound",
    "Resources",
    "RetryConfig",
    "Schedule",
    "Stats",
    "TaskqError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
]
