"""The web console at `/ui`: its static files, and the two reads it needs beyond the job routes.

The console is plain HTML, one stylesheet and a few hand-written ES modules in `service/api/ui/`,
installed as package data, so a regular install serves the console of its own version. The files are
read once when the app is built. `/ui` answers `index.html`, which names the other files under
`/ui/<version>/...`, where `<version>` is a digest of their contents: those answers may be cached for a
year (`immutable`), and a new release, having new contents, has new URLs. `index.html` itself is always
revalidated (`no-cache` with an ETag), so an upgrade is picked up on the next load. Every answer carries
a Content-Security-Policy that allows scripts, styles and connections from the API's own origin only
and no inline script or style.

The console talks to the API like any client: `fetch` with `Authorization: Bearer` and the stream with
the key in a subprotocol (see `auth.KEY_PROTOCOL`). The reads below exist for it: a job's neighbours
in the dependency graph (`GET /jobs/{id}/graph`) and the last minutes' throughput
(`GET /stats/throughput`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from service.api.intake import JOB_ID
from service.api.submit import timestamp
from service.api.views import pool_of
from service.errors import JobNotFound
from service.store import gateway

INDEX = "index.html"
VERSION_MARK = "__VERSION__"  # in index.html, replaced by the digest of the other files
GRAPH_LIMIT = 100  # parents and children drawn per side; the answer says when there are more

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# No inline script or style anywhere: the modules set styles through the CSSOM, which CSP allows.
# 'self' in connect-src covers the WebSocket to the same host and port (CSP Level 3).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@dataclass(frozen=True)
class ConsoleFiles:
    version: str
    index: Asset
    assets: dict[str, Asset]


def _asset(name: str, body: bytes) -> Asset:
    suffix = name[name.rfind(".") :]
    return Asset(body, _TYPES.get(suffix, "application/octet-stream"), f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def load_console() -> ConsoleFiles:
    """The console's files from the installed package; a flat folder, so a URL names a file by its name."""
    folder = resources.files("service.api") / "ui"
    files = {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.rsplit(".", 1)[-1] in {"html", "js", "css", "svg", "png"}
    }
    digest = hashlib.sha256()
    for name in sorted(files):
        if name != INDEX:
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    version = digest.hexdigest()[:16]
    index = files.pop(INDEX).replace(VERSION_MARK.encode(), version.encode())
    return ConsoleFiles(version, _asset(INDEX, index), {name: _asset(name, body) for name, body in files.items()})


def _answer(request: Request[Any, Any, Any], asset: Asset, cache: str) -> Response[bytes]:
    headers = {**_SECURITY_HEADERS, "Cache-Control": cache, "ETag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@get(["/ui"], summary="The web console", tags=["console"], include_in_schema=False)
async def console_index(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    files: ConsoleFiles = state.console
    return _answer(request, files.index, REVALIDATE)


@get("/ui/{version:str}/{file:str}", summary="A file of the web console", tags=["console"], include_in_schema=False)
async def console_file(version: str, file: str, request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    """Only the current version's files: a page of an older release gets 404 and is reloaded by its user,
    rather than mixing the modules of two releases."""
    files: ConsoleFiles = state.console
    asset = files.assets.get(file)
    if version != files.version or asset is None:
        raise NotFoundException(f"the console has no file {version}/{file}; reload /ui")
    return _answer(request, asset, IMMUTABLE)


# ------------------------------------------------------------------------------------ the console's reads


class Neighbour(msgspec.Struct):
    job_id: str
    type: str
    status: str


class JobGraph(msgspec.Struct):
    """A job with its parents and children; `more_*` when a side has more than the ones listed."""

    job_id: str
    type: str
    status: str
    parents: list[Neighbour]
    children: list[Neighbour]
    more_parents: bool
    more_children: bool


@get("/jobs/{job_id:str}/graph", summary="A job's parents and children, with their statuses", tags=["jobs"])
async def job_graph(job_id: str, state: State) -> JobGraph:
    pool = pool_of(state)
    # An id outside the pattern names no job (and a NUL must not reach PostgreSQL), as on the job routes.
    record = await gateway.get_job(pool, job_id) if JOB_ID.match(job_id) else None
    if record is None:
        raise JobNotFound(f"no job has id {job_id!r}")
    rows = await gateway.job_neighbours(pool, job_id, GRAPH_LIMIT + 1)
    parents = [Neighbour(r.job_id, r.type, r.status) for r in rows if r.relation == "parent"]
    children = [Neighbour(r.job_id, r.type, r.status) for r in rows if r.relation == "child"]
    return JobGraph(
        job_id=job_id,
        type=record.type,
        status=record.status,
        parents=parents[:GRAPH_LIMIT],
        children=children[:GRAPH_LIMIT],
        more_parents=len(parents) > GRAPH_LIMIT,
        more_children=len(children) > GRAPH_LIMIT,
    )


class Minute(msgspec.Struct):
    at: str  # the minute's start
    started: int  # attempts started
    succeeded: int  # jobs that succeeded
    failed: int  # jobs that failed for good (the dead letter queue's arrivals)
    retried: int  # attempts that failed and were scheduled again


class Throughput(msgspec.Struct):
    minutes: list[Minute]


@get("/stats/throughput", summary="Jobs started, succeeded and failed per minute, lately", tags=["health"])
async def throughput(state: State, minutes: Annotated[int, Parameter(ge=1, le=60)] = 15) -> Throughput:
    """Every minute of the last `minutes` (oldest first, the current one last and still counting), from
    the stream's kept events."""
    rows = await gateway.recent_throughput(pool_of(state), minutes)
    return Throughput([Minute(timestamp(r.minute) or "", r.started, r.succeeded, r.failed, r.retried) for r in rows])
