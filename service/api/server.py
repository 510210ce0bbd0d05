"""The API actor's process: uvicorn serving the Litestar app."""

from __future__ import annotations

import os

import uvicorn

from service.api.app import create_app
from service.api.auth import guard
from service.api.fast_path import fast_submit
from service.api.limits import REQUESTS, SUBMIT, Limiter
from service.logs import configure_logging
from service.processes import die_with_parent, name_process
from service.settings import Settings


def main(settings: Settings, database_url: str, scheduler_socket: str, parent_pid: int, restarts: int = 0) -> None:
    die_with_parent(parent_pid)
    name_process("api")
    os.setpgrp()  # a Ctrl-C on the terminal is the root's to handle, not uvicorn's
    configure_logging(settings.log_level, "api")
    app = create_app(settings, database_url, scheduler_socket, restarts)
    # The key check wraps everything uvicorn serves, the submit fast path included: one place decides.
    rates = {SUBMIT: settings.rate_limit_submit, REQUESTS: settings.rate_limit_requests}
    served = guard(
        fast_submit(app, settings.max_body_bytes), app.state.keyring, settings.allowed_origins, Limiter(rates)
    )
    config = uvicorn.Config(
        served,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # besides its cost, an access line would carry a WebSocket's ?token=
        lifespan="on",
        timeout_graceful_shutdown=5,
        limit_concurrency=settings.max_connections,  # beyond it, uvicorn answers 503 at once
    )
    uvicorn.Server(config).run()
