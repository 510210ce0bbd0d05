"""The four rules the code base keeps, checked from the source: cheap, and they fail loudly when broken.

1. The scheduling core imports no I/O.
2. The API writes nothing after a submission: every state transition is the scheduler's.
3. SQL lives only in the store.
4. A worker never touches the database.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"
IO_MODULES = {"asyncio", "asyncpg", "socket", "selectors", "subprocess", "select", "signal", "os", "httpx", "uvicorn"}
# Statements as this code base writes them (keywords in capitals, as in service/store/queries.sql).
SQL = re.compile(r"\bSELECT\b[\s\S]+\bFROM\b|\bINSERT INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE FROM\b")


def module_path(name: str) -> Path | None:
    if name == "taskq" or name.startswith("taskq."):  # the public package, installed from service/taskq
        name = f"service.{name}"
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@cache
def direct_imports(name: str) -> frozenset[str]:
    path = module_path(name)
    assert path is not None, name
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 1:  # the client package's own `from .x`
            module = f"{package}.{node.module}" if node.module else package
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names if module_path(f"{module}.{alias.name}")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {
                f"{node.module}.{alias.name}" for alias in node.names if module_path(f"{node.module}.{alias.name}")
            }
    return frozenset(found)


def transitive_imports(name: str) -> set[str]:
    """Every module `name` imports, following the project's own modules (not third-party ones)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for imported in direct_imports(todo.pop()):
            if imported not in seen:
                seen.add(imported)
                if imported.startswith(("service", "taskq")) and module_path(imported):
                    todo.append(imported)
    return seen


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize(
    "core",
    [
        "service.scheduler.core",
        "service.scheduler.queue",
        "service.scheduler.ranked",
        "service.scheduler.cron",
        "service.scheduler.type_controls",
    ],
)
def test_the_scheduling_core_imports_no_io(core: str) -> None:
    imported = transitive_imports(core)
    assert not tops(imported) & IO_MODULES, sorted(tops(imported) & IO_MODULES)
    assert not {m for m in imported if m.startswith(("service.store", "service.transport", "service.api"))}


def test_the_api_writes_nothing_but_new_submissions() -> None:
    # The store functions the API may call: reads, and the inserts of a submission's group commit.
    allowed = {
        "connect_pool", "find_jobs", "insert_jobs", "reserve_seqs", "copy_jobs", "insert_edges", "get_job",
        "list_jobs", "get_logs", "count_by_status", "running_resources", "events_after", "first_event_seq",
        "ping", "DuplicateJobId", "ExistingJob", "InsertedJob", "JobRow", "JobRecord", "LogEntry", "EventRecord",
    }  # fmt: skip
    # API keys are not job state: the scheduler has no stake in them, so the /keys routes write the
    # api_keys table directly, and the key check reads it. These, and nothing else, are added.
    allowed |= {
        "insert_api_key", "list_api_keys", "revoke_api_key", "find_api_key", "any_api_key",
        "ApiKey", "KeyCheck", "DuplicateKeyId",
    }  # fmt: skip
    # The web console's two reads (api/console.py): a job's neighbours and the recent throughput.
    allowed |= {"job_neighbours", "recent_throughput", "Neighbour", "MinuteCounts"}
    # Schedules and type controls are configuration, not job state: the API writes their rows and tells
    # the scheduler, which alone fires the schedules (service/scheduler/schedules.py) and enforces the controls.
    allowed |= {
        "insert_schedule", "get_schedule", "list_schedules", "update_schedule", "delete_schedule",
        "upsert_type_control", "list_type_controls", "live_counts_by_type", "ScheduleRow", "TypeControlRow",
    }  # fmt: skip
    used: set[str] = set()
    for path in (SERVICE / "api").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "gateway":
                used.add(node.attr)
            elif isinstance(node, ast.ImportFrom) and node.module == "service.store.gateway":
                used |= {alias.name for alias in node.names}
    assert used, "the API uses the store: the check would prove nothing"
    assert used <= allowed, f"the API calls store functions that change jobs: {sorted(used - allowed)}"


def test_sql_lives_only_in_the_store() -> None:
    offenders = []
    for path in SERVICE.rglob("*.py"):
        if path.is_relative_to(SERVICE / "store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_a_worker_never_touches_the_database() -> None:
    # The handler API (taskq.registry, taskq.context) is what user code runs in a worker: it submits
    # through the HTTP API.
    for module in ("service.supervisor.worker", "service.handlers", "service.handlers.builtin", "taskq.testing"):
        imported = transitive_imports(module)
        assert "asyncpg" not in tops(imported), module
        assert not {m for m in imported if m.startswith("service.store")}, module


@pytest.mark.parametrize("module", ["taskq", "taskq.testing", "taskq.registry", "taskq.context"])
def test_the_public_package_imports_nothing_of_the_service(module: str) -> None:
    imported = transitive_imports(module)
    assert "taskq.context" in transitive_imports("taskq"), "the check follows the package's own imports"
    assert not {m for m in imported if m.startswith("service")}, module
    assert not tops(imported) & {"asyncpg", "litestar", "uvicorn"}, module
