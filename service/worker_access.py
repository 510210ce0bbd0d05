"""How a handler reaches the service that runs it: `ctx.submit(...)` and `some_type.defer(...)` inside a
worker submit through the service's own HTTP API (a worker never touches the database).

At each start the root draws a random credential for its workers and says it, with the API's own
address, in its environment before it spawns the actors (`issue`): the API accepts that credential with
the `submit` scope only (`service.api.auth`), and the zygote hands both to every worker as TASKQ_URL and
TASKQ_API_KEY (`adopt`), which `taskq`'s default connection reads. The credential lives as long as the
run and is never stored; it is not a key of the `api_keys` table and cannot be revoked or listed.
"""

from __future__ import annotations

import ipaddress
import os
import secrets

from service.settings import Settings

TOKEN_VARIABLE = "TASKQ_WORKER_TOKEN"
URL_VARIABLE = "TASKQ_WORKER_URL"


def issue(settings: Settings) -> None:
    """In the root, before the actors start (they inherit its environment)."""
    os.environ[TOKEN_VARIABLE] = f"tqw_{secrets.token_urlsafe(32)}"
    os.environ[URL_VARIABLE] = own_url(settings.host, settings.port)


def own_url(host: str, port: int) -> str:
    """The API as a process on this machine reaches it: a wildcard bind is reached on loopback."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            host = f"[{host.strip('[]')}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{port}"


def token() -> str | None:
    """In the API: the credential its workers present, if the root issued one."""
    return os.environ.get(TOKEN_VARIABLE) or None


def adopt() -> None:
    """In the zygote, before it forks: every worker's default connection is its own service's API."""
    url, credential = os.environ.get(URL_VARIABLE), token()
    if url is not None:
        os.environ["TASKQ_URL"] = url
    if credential is not None:
        os.environ["TASKQ_API_KEY"] = credential
