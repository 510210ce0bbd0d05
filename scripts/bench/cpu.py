"""CPU seconds by process role over a measured window: the service's roles (from the process titles), the
embedded PostgreSQL, and this benchmark process with the load generators it ran (`wrk` is a child)."""

from __future__ import annotations

import resource

import psutil

from .database import PgServer
from .service_proc import ServiceProcess

ROLES = ("api", "scheduler", "supervisor", "zygote", "workers", "postgresql", "root", "other")


def _client_cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class CpuWindow:
    """`start()` … `stop()`; then `.cpu` holds the CPU seconds each role used in between."""

    def __init__(self, svc: ServiceProcess, pg: PgServer) -> None:
        self.svc, self.pg = svc, pg
        self.cpu: dict[str, float] = {}
        self._before: dict[str, float] = {}
        self.machine_busy_s = 0.0  # CPU seconds the whole machine was busy (everyone's processes)
        self.machine_total_s = 0.0  # CPU seconds available (wall time × CPUs)
        self._machine: tuple[float, float] = (0.0, 0.0)

    def _snapshot(self) -> dict[str, float]:
        out = dict(self.svc.cpu())
        pg = self.pg.cpu_seconds()
        if pg is not None:
            out["postgresql"] = pg
        out["load generator"] = _client_cpu()
        return out

    @staticmethod
    def _machine_now() -> tuple[float, float]:
        t = psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        return float(sum(t) - idle), float(sum(t))

    def start(self) -> CpuWindow:
        self._before = self._snapshot()
        self._machine = self._machine_now()
        return self

    def stop(self) -> dict[str, float]:
        after = self._snapshot()
        busy, total = self._machine_now()
        self.machine_busy_s, self.machine_total_s = busy - self._machine[0], total - self._machine[1]
        self.cpu = {k: v - self._before.get(k, 0.0) for k, v in after.items()}
        return self.cpu

    def service_total(self) -> float:
        """The service's processes and PostgreSQL, without the load generator."""
        return sum(v for k, v in self.cpu.items() if k != "load generator")
