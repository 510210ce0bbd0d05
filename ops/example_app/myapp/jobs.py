"""Example job types, written as an application writes them: `from taskq import ...` only.

Built into the image with `docker build -f ops/Dockerfile --build-arg TASKQ_HANDLERS=myapp.jobs .`
(ops/example_app is the default APP_DIR); tests/unit/test_example_app.py runs them with taskq.testing.
"""

from __future__ import annotations

import msgspec
from taskq import JobContext, PermanentError, job_type


class Email(msgspec.Struct, forbid_unknown_fields=True):
    to: str
    subject: str
    body: str = ""


@job_type("welcome_email", retry={"max_attempts": 5, "initial_delay_seconds": 2}, timeout=30, priority="high")
async def welcome_email(ctx: JobContext, payload: Email) -> dict[str, str]:
    if "@" not in payload.to:
        raise PermanentError(f"not an address: {payload.to!r}")  # retrying cannot fix it
    ctx.log.info("sending %r to %s", payload.subject, payload.to)
    # ... hand the message to your mail service here ...
    return {"sent_to": payload.to}


class Export(msgspec.Struct):
    user_id: int
    rows: int = 1000


@job_type("export_rows", timeout=600, resources={"cpu_units": 1, "memory_mb": 256})
def export_rows(ctx: JobContext, payload: Export) -> dict[str, int]:
    """A plain `def` handler: it runs in a worker process of its own, so blocking is fine."""
    batch = 100
    for done in range(0, payload.rows, batch):
        # ... write rows done .. done + batch ...
        ctx.progress(done / payload.rows, f"{done} of {payload.rows} rows")
    ctx.progress(1.0, "exported")
    ctx.submit(welcome_email, {"to": f"user-{payload.user_id}@example.com", "subject": "Your export is ready"})
    return {"rows": payload.rows}
