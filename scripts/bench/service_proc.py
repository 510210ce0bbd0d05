"""The real service, `python -m service serve`, started in its own session and stopped by SIGTERM to its
pid (which drains and stops its whole process tree); and a small synchronous HTTP client for it."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from .common import ROOT, free_port, wait_until


class ServiceProcess:
    """`python -m service serve` in its own session, stopped by SIGTERM to its pid."""

    ROLES = ("root", "scheduler", "supervisor", "zygote", "api", "workers", "other")

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        capacity: dict[str, int],
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_") or k == "TASKQ_MIGRATIONS_DIR"}
        self.env = {
            **inherited,
            "TASKQ_DATABASE_URL": database_url,
            "TASKQ_HOST": "127.0.0.1",
            "TASKQ_PORT": str(self.port),
            "TASKQ_CPU_UNITS": str(capacity["cpu_units"]),
            "TASKQ_MEMORY_MB": str(capacity["memory_mb"]),
            "TASKQ_LOG_LEVEL": "INFO",
            **(extra_env or {}),  # e.g. a cluster node's TASKQ_CLUSTER_SECRET, TASKQ_NODE_NAME
        }
        self.extra_env = dict(extra_env or {})
        self.capacity = dict(capacity)
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s = math.nan
        self.exit_code: int | None = None
        self.stop_s = math.nan
        self.stop_note = ""

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as out:
            t0 = time.monotonic()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with httpx.Client(base_url=self.base_url, timeout=2.0) as http:

            def ready() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"taskq serve exited with code {self.process.returncode} before it was ready; "
                        f"log tail:\n{self.log_tail()}"
                    )
                try:
                    return http.get("/health/ready").status_code == 200
                except httpx.TransportError:
                    return False

            try:
                wait_until(ready, timeout=timeout, interval=0.1, what="GET /health/ready to answer 200")
            except TimeoutError as exc:
                raise RuntimeError(f"{exc}; log tail:\n{self.log_tail()}") from None
        self.ready_s = time.monotonic() - t0

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return "(no log)"

    def tree(self) -> list[psutil.Process]:
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def role(self, proc: psutil.Process) -> str:
        assert self.process is not None
        if proc.pid == self.process.pid:
            return "root"
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            return "other"
        if cmd.startswith("taskq: worker"):
            return "workers"
        for role in ("scheduler", "supervisor", "zygote", "api"):
            if cmd.startswith(f"taskq: {role}"):
                return role
        return "other"

    def rss(self) -> dict[str, int]:
        """RSS by role, summed over the process tree (pages shared after fork are counted in each process)."""
        out = dict.fromkeys(self.ROLES, 0)
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                out[self.role(proc)] += proc.memory_info().rss
        out["total"] = sum(out[r] for r in self.ROLES)
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds by role; reaped workers are in the children times of the zygote that forked them."""
        out = dict.fromkeys(self.ROLES, 0.0)
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                role = self.role(proc)
                t = proc.cpu_times()
                out[role] += t.user + t.system
                # Reaped children: the zygote's are workers; the supervisor's, its zygotes (a replaced one).
                reaped = {"zygote": "workers", "supervisor": "zygote"}.get(role, role)
                out[reaped] += t.children_user + t.children_system
        return out

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> float:
        """SIGKILL to the root's process group (root, scheduler, supervisor, zygote), nothing drained; the API
        and the workers, in process groups of their own, die with their parents (PR_SET_PDEATHSIG), which is
        checked here: any left after 10 s is killed by pid. Returns the wall-clock time (`time.time()`) just
        before the signal."""
        assert self.process is not None
        descendants: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            descendants = self.tree()[1:]
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.exit_code = self.process.wait(10)
        self.stop_note = "killed with SIGKILL (process group)"
        self._reap(descendants)
        return at

    def _reap(self, descendants: list[psutil.Process]) -> None:
        left = [p for p in descendants if _alive(p)]
        if left:
            with contextlib.suppress(BaseException):
                wait_until(lambda: not [p for p in left if _alive(p)], timeout=10, what="descendants to exit")
            left = [p for p in left if _alive(p)]
        if left:
            self.stop_note += f" {len(left)} descendant process(es) outlived the root and were killed"
            for p in left:
                with contextlib.suppress(psutil.Error):
                    p.kill()

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is None or self.exit_code is not None:
            return
        descendants: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            descendants = self.tree()[1:]
        t0 = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop_note = f"did not exit within {timeout:.0f}s of SIGTERM; killed with SIGKILL"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.exit_code = self.process.wait(10)
        self.stop_s = time.monotonic() - t0
        self._reap(descendants)


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class Api:
    """A small synchronous client for the scenarios and the query measurements."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def submit(self, job: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/jobs", json=job)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST /jobs {job.get('job_id')} -> {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/jobs/{job_id}")
        if response.status_code != 200:
            raise RuntimeError(f"GET /jobs/{job_id} -> {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/stats").json()
        return body

    def logs(self, job_id: str) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = self.http.get(f"/jobs/{job_id}/logs").json()
        return body

    def wait_for(self, job_ids: Sequence[str], statuses: set[str], timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}

        def check() -> bool:
            for job_id in job_ids:
                if job_id not in seen or seen[job_id]["status"] not in statuses:
                    seen[job_id] = self.job(job_id)
            return all(seen[j]["status"] in statuses for j in job_ids)

        try:
            wait_until(check, timeout=timeout, interval=0.05, what=f"{', '.join(job_ids)} to become {statuses}")
        except TimeoutError as exc:
            last = ", ".join(f"{j}: {seen[j]['status']}" for j in seen)
            raise TimeoutError(f"{exc}; last seen: {last}") from None
        return seen


TERMINAL = {"succeeded", "failed", "cancelled", "upstream_failed"}
