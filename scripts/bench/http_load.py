"""Load generators that cost the client little, so that the service is what is measured.

- `RawHttp`: one keep-alive HTTP/1.1 connection over a plain socket, sending pre-encoded requests; used for
  the sequential round trip (timed with `perf_counter_ns`), the one-at-a-time latency and the batch clients.
- `wrk_load`: `wrk` (compiled, /usr/bin/wrk) with a Lua script that sets the POST body; used for the rate of
  single submissions from many concurrent clients.
- `socket_load`: the fallback when `wrk` is missing: asyncio over raw sockets with pre-encoded requests.
  It is Python, so on a small machine it takes CPU from the service; the report says which one ran.
- `batch_load`: a few threads, each with its own `RawHttp`, sending pre-encoded batch bodies.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .common import pct

WRK = os.environ.get("TASKQ_BENCH_WRK", "wrk")  # another path, or a missing name to force the fallback


def build_request(method: str, path: str, port: int, body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


class RawHttp:
    """A keep-alive HTTP/1.1 client on one socket; responses need Content-Length (or chunked encoding)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 120.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def _read_until(self, marker: bytes) -> bytes:
        while (i := self.buf.find(marker)) < 0:
            self._fill()
        out, self.buf = self.buf[:i], self.buf[i + len(marker) :]
        return out

    def _read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self) -> tuple[int, bytes]:
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        if "content-length" in headers:
            return status, self._read_exactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
                body += self._read_exactly(size)
                self._read_exactly(2)
            self._read_until(b"\r\n")
            return status, body
        raise RuntimeError(f"response without Content-Length or chunked encoding: {head[:3]}")

    def request(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        return self.read_response()

    def timed(self, raw: bytes) -> tuple[int, bytes, int, int, int]:
        """(status, body, wall-clock ns just before the send, wall-clock ns once the response is read,
        round trip in perf_counter ns)."""
        wall0 = time.time_ns()
        t0 = time.perf_counter_ns()
        self.sock.sendall(raw)
        status, body = self.read_response()
        t1 = time.perf_counter_ns()
        return status, body, wall0, time.time_ns(), t1 - t0


@dataclass
class LoadResult:
    generator: str
    connections: int
    duration_s: float
    ok: int  # 2xx responses
    other: int  # non-2xx responses
    errors: int  # socket errors / timeouts
    latency_s: dict[int, float] = field(default_factory=dict)  # percentile -> seconds
    client_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0


def wrk_available() -> str | None:
    return shutil.which(WRK)


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot read wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str, connections: int) -> LoadResult:
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    requests, duration = int(m.group(1)), float(m.group(2)) * _UNITS[m.group(3)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    latency = {int(p): _seconds(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    other = int(non2xx.group(1)) if non2xx else 0
    return LoadResult(
        generator="wrk",
        connections=connections,
        duration_s=duration,
        ok=requests - other,
        other=other,
        errors=sum(int(x) for x in errors.groups()) if errors else 0,
        latency_s=latency,
    )


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wrk_load(url: str, body: bytes, *, connections: int, threads: int, duration_s: float) -> LoadResult:
    """POSTs `body` to `url` from `connections` keep-alive connections for `duration_s`."""
    if b"]]" in body:
        raise ValueError("the body cannot go into a Lua long string")
    with tempfile.TemporaryDirectory(prefix="taskq-bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{body.decode()}]]\n'
        )
        cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(script), url]
        cpu0 = _children_cpu()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False)
        cpu = _children_cpu() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr[-2000:]}")
    result = parse_wrk(done.stdout, connections)
    result.client_cpu_s = cpu
    return result


async def _socket_load(port: int, raw: bytes, connections: int, duration_s: float) -> LoadResult:
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    errors = 0
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    deadline = 0.0

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(raw)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if not length:
                    raise RuntimeError("response without Content-Length")
                await reader.readexactly(int(length.group(1)))
            except (OSError, asyncio.IncompleteReadError, RuntimeError):
                errors += 1
                return
            latencies.append(time.perf_counter() - t0)
            statuses[status] += 1

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + duration_s
    await asyncio.gather(*(one(r, w) for r, w in conns))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for _, w in conns:
        w.close()
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return LoadResult(
        generator="raw-socket asyncio (Python; wrk not found)",
        connections=connections,
        duration_s=elapsed,
        ok=ok,
        other=sum(statuses.values()) - ok,
        errors=errors,
        latency_s={p: pct(latencies, p) for p in (50, 75, 90, 99)},
        client_cpu_s=cpu,
    )


def socket_load(port: int, raw: bytes, *, connections: int, duration_s: float) -> LoadResult:
    """The same load as `wrk_load` from this process: `raw` (a whole pre-encoded request) on each connection,
    back to back, for `duration_s`."""
    return asyncio.run(_socket_load(port, raw, connections, duration_s))


@dataclass
class BatchResult:
    clients: int
    batch_size: int
    elapsed_s: float  # first send → last response
    accepted_jobs: int
    batches: list[float] = field(default_factory=list)  # round trip of each batch, seconds
    failures: list[str] = field(default_factory=list)
    client_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.accepted_jobs / self.elapsed_s if self.elapsed_s > 0 else 0.0


def batch_load(
    port: int, requests: Sequence[bytes], *, batch_size: int, clients: int, duration_s: float | None = None
) -> BatchResult:
    """`clients` threads, each on its own connection, send the pre-encoded batch requests in turn until they
    run out (or, with `duration_s`, until that much time has passed)."""
    lock = threading.Lock()
    todo = iter(requests)
    result = BatchResult(clients, batch_size, 0.0, 0)
    conns = [RawHttp(port) for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(http: RawHttp) -> None:
        start.wait()
        while duration_s is None or time.perf_counter() < deadline[0]:
            with lock:
                raw = next(todo, None)
            if raw is None:
                return
            t0 = time.perf_counter()
            status, body = http.request(raw)
            took = time.perf_counter() - t0
            with lock:
                result.batches.append(took)
                if status == 201:
                    result.accepted_jobs += batch_size
                else:
                    result.failures.append(f"{status}: {body[:200]!r}")

    threads = [threading.Thread(target=client, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline[0] = t0 + (duration_s or 0.0)
    start.wait()
    for t in threads:
        t.join()
    result.elapsed_s = time.perf_counter() - t0
    result.client_cpu_s = time.process_time() - cpu0
    for c in conns:
        c.close()
    return result
