"""Settings from `TASKQ_*` environment variables, validated once at start with one phrasing of error.

Each setting is declared once in `SETTINGS` with its default and a one-line description; the README's
configuration table is checked against this list by a test.
"""

from __future__ import annotations

import keyword
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec


class SettingsError(ValueError):
    """A TASKQ_* variable holds a value the service cannot use."""


_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|m|h)(?:\s*:\s*([0-9]+))?")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


class Rate(msgspec.Struct, frozen=True):
    """`per_second` tokens refill continuously; a caller may spend up to `burst` at once."""

    per_second: float
    burst: int
    text: str  # as configured, for the 429's detail

    @classmethod
    def parse(cls, raw: str) -> Rate:
        """`100/s`, `6000/m`, `10/h`, with an optional burst: `100/s:500`. The burst defaults to one
        second's worth (at least 1)."""
        text = raw.strip().lower()
        match = _RATE.fullmatch(text)
        if match is None:
            raise ValueError(raw)
        per_second = float(match.group(1)) / _PER[match.group(2)]
        if not 0 < per_second < math.inf:  # 400 nines is a float, but an infinite one: no burst fits it
            raise ValueError(raw)
        burst = int(match.group(3)) if match.group(3) else max(1, math.ceil(per_second))
        if burst < 1:
            raise ValueError(raw)
        return cls(per_second, burst, text)


class Settings(msgspec.Struct, frozen=True):
    database_url: str | None
    data_dir: str
    host: str
    port: int
    cpu_units: int
    memory_mb: int
    shutdown_grace_seconds: float
    handlers: tuple[str, ...]
    aging_interval_seconds: float
    kill_grace_seconds: float
    default_timeout_seconds: float
    spare_workers: int
    max_log_lines: int
    retention_succeeded: float | None
    retention_failed: float | None
    stream_buffer_bytes: int
    max_stream_clients: int
    max_connections: int
    max_live_jobs: int
    rate_limit_submit: Rate | None
    rate_limit_requests: Rate | None
    max_body_bytes: int
    log_level: str
    auth: str
    bootstrap_key: Secret | None
    allowed_origins: tuple[str, ...]
    cluster_secret: Secret | None
    node_name: str | None
    cluster_port: int
    advertise_host: str
    leader_lease_seconds: float
    cluster_tls_cert: str | None
    cluster_tls_key: str | None
    cluster_tls_ca: str | None

    @property
    def clustered(self) -> bool:
        return self.cluster_secret is not None

    @property
    def node(self) -> str:
        """This node's name in the cluster (and on its attempts): TASKQ_NODE_NAME, or host name and port."""
        return self.node_name or f"{socket.gethostname()}:{self.port}"

    @property
    def cluster_tls(self) -> bool:
        return self.cluster_tls_cert is not None

    @property
    def executor_lease_seconds(self) -> float:
        """How long an executor keeps running its attempts without hearing from a scheduler. Longer than a
        leader failover (a lease, then a second to notice and take it, then a reconnect), so that a change
        of leader never costs a running job; a scheduler re-dispatches a silent node's attempts only after
        this plus the kill grace (ARCHITECTURE.md, "Cluster")."""
        return 2 * self.leader_lease_seconds + 2.0


class Secret:
    """A setting's value that must never be printed: its repr (and so the repr of `Settings`, which
    goes to the child processes and could end in a log line) shows only that it is set."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


@dataclass(frozen=True)
class Setting:
    field: str
    default: str
    description: str
    parse: Callable[[str], Any]
    rule: str

    @property
    def env(self) -> str:
        return "TASKQ_" + self.field.upper()


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", raw.strip()):
            raise ValueError
        value = int(raw.strip())
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if not low <= value <= high:  # also rejects NaN
            raise ValueError
        return value

    return parse


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(d|h|m|s)?")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, None: 1.0}


def _retention(raw: str) -> float | None:
    """`7d`, `12h`, `30m`, `90s` or seconds; `0` or `forever` keeps them (None)."""
    text = raw.strip().lower()
    if text in ("0", "forever"):
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= 100 * 365 * 86400:
        raise ValueError
    return seconds


def _optional_rate(raw: str) -> Rate | None:
    return Rate.parse(raw) if raw.strip() else None


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError
    return raw.strip()


def _modules(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    if any(not all(p.isidentifier() and not keyword.iskeyword(p) for p in name.split(".")) for name in names):
        raise ValueError
    return names


def _level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError
    return value


def _auth(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"auto", "on", "off"}:
        raise ValueError
    return value


def _bootstrap_key(raw: str) -> Secret | None:
    value = raw.strip()
    if not value:
        return None
    # Anything shorter than a generated key's secret could be guessed; a real key is accepted as given.
    if not (re.fullmatch(r"tq_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", value) or len(value) >= 32):
        raise ValueError
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError
    return Secret(value)


def _cluster_secret(raw: str) -> Secret | None:
    value = raw.strip()
    if not value:
        return None
    if len(value) < 32 or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError
    return Secret(value)


def _node_name(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", value):
        raise ValueError
    return value


def _origins(raw: str) -> tuple[str, ...]:
    """Origins as browsers send them: scheme://host[:port], lower case, no path."""
    origins = []
    for part in raw.split(","):
        origin = part.strip().lower().rstrip("/")
        if not origin:
            continue
        if not re.fullmatch(r"https?://[a-z0-9.\-\[\]:]+", origin):
            raise ValueError
        origins.append(origin)
    return tuple(origins)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        "",
        "PostgreSQL URL; unset starts an embedded PostgreSQL in TASKQ_DATA_DIR",
        _optional_text,
        "a postgres:// URL",
    ),
    Setting("data_dir", "./.data", "where the embedded PostgreSQL keeps its files", _text, "a directory path"),
    Setting("host", "127.0.0.1", "address the HTTP API listens on", _text, "a host name or address"),
    Setting("port", "8000", "port the HTTP API listens on", _integer(1, 65535), "an integer 1-65535"),
    Setting("cpu_units", "8", "CPU units this node offers to jobs", _integer(1, 1_000_000), "an integer 1-1000000"),
    Setting(
        "memory_mb",
        "4096",
        "memory in MB this node offers to jobs",
        _integer(1, 1 << 40),
        "an integer 1-1099511627776",
    ),
    Setting(
        "shutdown_grace_seconds",
        "30",
        "how long running jobs may finish after SIGTERM",
        _number(0, 86_400),
        "a number 0-86400",
    ),
    Setting(
        "handlers",
        "",
        "comma-separated modules that register your own job types",
        _modules,
        "comma-separated Python module names",
    ),
    Setting(
        "aging_interval_seconds",
        "60",
        "waiting time that raises a job's effective priority by one level",
        _number(0.001, 86_400 * 365),
        "a number 0.001-31536000",
    ),
    Setting(
        "kill_grace_seconds",
        "2",
        "time between SIGTERM and SIGKILL when a worker is stopped",
        _number(0, 600),
        "a number 0-600",
    ),
    Setting(
        "default_timeout_seconds",
        "3600",
        "timeout of jobs submitted without timeout_seconds (also bounds their run for backfill planning)",
        _number(0.001, 7 * 86_400),
        "a number 0.001-604800",
    ),
    Setting(
        "spare_workers",
        "4",
        "pre-forked idle workers kept ready so a start costs no fork",
        _integer(0, 64),
        "an integer 0-64",
    ),
    Setting(
        "max_log_lines",
        "1000",
        "handler log lines (logger, stdout, stderr) kept per attempt; the rest are counted and dropped",
        _integer(0, 1_000_000),
        "an integer 0-1000000",
    ),
    Setting(
        "retention_succeeded",
        "7d",
        "how long succeeded and cancelled jobs (with their attempts and logs) are kept after they finish",
        _retention,
        "a duration such as 7d, 12h, 30m, 90s or seconds, or 0 (forever)",
    ),
    Setting(
        "retention_failed",
        "30d",
        "how long failed and upstream_failed jobs (with their attempts and logs) are kept after they finish",
        _retention,
        "a duration such as 30d, 12h, 30m, 90s or seconds, or 0 (forever)",
    ),
    Setting(
        "stream_buffer_bytes",
        "1048576",
        "bytes of events buffered per WebSocket client; a client further behind is disconnected as a slow"
        " consumer (close code 1008) and resumes with ?after",
        _integer(4096, 1 << 30),
        "an integer 4096-1073741824",
    ),
    Setting(
        "max_stream_clients",
        "1000",
        "WebSocket stream clients at once per API process; one more is closed with 1013 (try again later)",
        _integer(1, 1_000_000),
        "an integer 1-1000000",
    ),
    Setting(
        "max_connections",
        "2000",
        "HTTP connections and WebSockets at once per API process; beyond it uvicorn answers 503",
        _integer(16, 1_000_000),
        "an integer 16-1000000",
    ),
    Setting(
        "max_live_jobs",
        "1000000",
        "jobs waiting or running at once (the scheduler holds each in memory); beyond it a submit gets 429",
        _integer(1, 1_000_000_000),
        "an integer 1-1000000000",
    ),
    Setting(
        "rate_limit_submit",
        "",
        "submissions (POST /jobs, POST /jobs/batch) per API key, or per client address when keys are off,"
        " e.g. 100/s or 6000/m, optionally with a burst (100/s:500); unset: no limit",
        _optional_rate,
        "a rate such as 100/s, 6000/m or 10/h, optionally :burst, or empty",
    ),
    Setting(
        "rate_limit_requests",
        "",
        "every other request but probes and /metrics, per API key or client address, same form; unset: no limit",
        _optional_rate,
        "a rate such as 100/s, 6000/m or 10/h, optionally :burst, or empty",
    ),
    Setting(
        "max_body_bytes",
        "1048576",
        "largest request body the API accepts",
        _integer(1024, 1 << 30),
        "an integer 1024-1073741824",
    ),
    Setting("log_level", "INFO", "DEBUG, INFO, WARNING or ERROR", _level, "one of DEBUG, INFO, WARNING, ERROR"),
    Setting(
        "auth",
        "auto",
        "auto: keys required once one exists or when not bound to loopback; on: always; off: never",
        _auth,
        "one of auto, on, off",
    ),
    Setting(
        "bootstrap_key",
        "",
        "a key with every scope, accepted besides the stored ones (its presence turns authentication on)",
        _bootstrap_key,
        "a taskq key (tq_...) or a secret of at least 32 printable characters",
    ),
    Setting(
        "allowed_origins",
        "",
        "comma-separated browser origins allowed besides the same origin (WebSocket and unsafe methods)",
        _origins,
        "comma-separated origins such as https://ops.example.com",
    ),
    Setting(
        "cluster_secret",
        "",
        "shared secret of a cluster: nodes on one database with the same secret form one cluster; unset: a"
        " single node, and a second node on the same database is refused",
        _cluster_secret,
        "a secret of at least 32 printable characters, or empty",
    ),
    Setting(
        "node_name",
        "",
        "this node's name in the cluster (shown on attempts and in /stats); default: host name and port",
        _node_name,
        "1-64 characters of letters, digits, '.', '_', ':' or '-'",
    ),
    Setting(
        "cluster_port",
        "0",
        "TCP port for links from other nodes (the scheduler listens on it while it leads); 0: any free port",
        _integer(0, 65535),
        "an integer 0-65535",
    ),
    Setting(
        "advertise_host",
        "127.0.0.1",
        "the address other nodes reach this node's cluster port at",
        _text,
        "a host name or address",
    ),
    Setting(
        "cluster_tls_cert",
        "",
        "PEM certificate of this node for cluster links (with _KEY and _CA: links run over mutual TLS)",
        _optional_text,
        "a file path, or empty",
    ),
    Setting(
        "cluster_tls_key",
        "",
        "PEM private key of TASKQ_CLUSTER_TLS_CERT",
        _optional_text,
        "a file path, or empty",
    ),
    Setting(
        "cluster_tls_ca",
        "",
        "PEM certificate(s) of the authority that signed every node's cluster certificate",
        _optional_text,
        "a file path, or empty",
    ),
    Setting(
        "leader_lease_seconds",
        "5",
        "the scheduler leader's lease in PostgreSQL: renewed every second, taken over after this long unrenewed",
        _number(1, 600),
        "a number 1-600",
    ),
)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost", "[::1]"})


def is_loopback(host: str) -> bool:
    return host.lower() in LOOPBACK_HOSTS


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting, raising `SettingsError` naming the first bad variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env, setting.default)
        try:
            values[setting.field] = setting.parse(raw)
        except ValueError:
            secret = setting.field in ("bootstrap_key", "cluster_secret")  # a typo'd secret is still one
            shown = "(hidden)" if secret else repr(raw)
            raise SettingsError(f"expected {setting.env} to be {setting.rule}, got {shown}") from None
    tls = ("cluster_tls_cert", "cluster_tls_key", "cluster_tls_ca")
    given = [name for name in tls if values[name] is not None]
    if given and len(given) < len(tls):
        missing = next(name for name in tls if values[name] is None)
        raise SettingsError(
            f"expected TASKQ_{missing.upper()} to be set too: cluster TLS needs a certificate, its key and a CA"
        )
    if given and values["cluster_secret"] is None:
        raise SettingsError("expected TASKQ_CLUSTER_SECRET to be set: cluster TLS is for the links of a cluster")
    return Settings(**values)
