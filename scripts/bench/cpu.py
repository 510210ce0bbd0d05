"""CPU seconds by process role over a measured window: the service's roles (from the process titles), the
embedded PostgreSQL, and this benchmark process with the load generators it ran (`wrk` is a child)."""

from __future__ import annotations

import resource

from .database import PgServer
from .service_proc import ServiceProcess

ROLES = ("api", "scheduler", "supervisor", "workers", "postgresql", "root", "other")


def _client_cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class CpuWindow:
    """`start()` … `stop()`; then `.cpu` holds the CPU seconds each role used in between."""

    def __init__(self, svc: ServiceProcess, pg: PgServer) -> None:
        self.svc, self.pg = svc, pg
        self.cpu: dict[str, float] = {}
        self._before: dict[str, float] = {}

    def _snapshot(self) -> dict[str, float]:
        out = dict(self.svc.cpu())
        pg = self.pg.cpu_seconds()
        if pg is not None:
            out["postgresql"] = pg
        out["load generator"] = _client_cpu()
        return out

    def start(self) -> CpuWindow:
        self._before = self._snapshot()
        return self

    def stop(self) -> dict[str, float]:
        after = self._snapshot()
        self.cpu = {k: v - self._before.get(k, 0.0) for k, v in after.items()}
        return self.cpu

    def service_total(self) -> float:
        """The service's processes and PostgreSQL, without the load generator."""
        return sum(v for k, v in self.cpu.items() if k != "load generator")
