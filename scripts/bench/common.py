"""Small helpers shared by the benchmark's modules: statistics, formatting, waiting, logging."""

from __future__ import annotations

import math
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from tests.scenarios import NODE_CAPACITY

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "evaluation_results.md"
T = TypeVar("T")

PRIORITIES = ("critical", "high", "normal", "low")
CAPACITY = NODE_CAPACITY  # the specification's node ("8 CPU units and 4096 MB")
FAR_FUTURE = "2099-01-01T00:00:00Z"  # run_at of jobs that must not run during the benchmark


def pct(values: Sequence[float], p: float) -> float:
    """Percentile with linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def ts(value: str) -> float:
    """An API timestamp (ISO 8601, millisecond resolution) as seconds since the epoch."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def ms(seconds: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f} ms"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else math.nan


def wait_until(check: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str) -> T:
    """Polls `check` until it returns something truthy; raises TimeoutError with what it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def peak_concurrency(intervals: Iterable[tuple[float, float]]) -> int:
    """Most intervals open at once (an end before a start at equal times)."""
    events = sorted(e for a, b in intervals for e in ((a, 1), (b, -1)))
    events.sort(key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak
