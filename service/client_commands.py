"""The `taskq` commands that talk to a running service (submit, get, list, logs, cancel, retry, dlq,
explain, stats, watch, schedules, types), all through the Python client `taskq.Client`, never raw HTTP.

`service.cli` owns the parser's top level and the local commands (serve, migrate, keys); this module adds
the client commands to it and runs them. It imports only the standard library at module level: `taskq
serve` imports it too, and must not pay for httpx, websockets or rich. Option parsing that can fail
(`--payload`, `--run-at`) is pure and raises `UsageError`, which the caller turns into exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # mypy checks the client as `service.taskq`; at run time it is imported as `taskq`
    from service.taskq import Client, Event, Gap, Job, LogLine, Schedule, TypeControls

DEFAULT_URL = "http://127.0.0.1:8000"
PRIORITIES = ("low", "normal", "high", "critical")
STATUSES = ("blocked", "scheduled", "pending", "running", "succeeded", "failed", "cancelled", "upstream_failed")
MAX_PAGE = 500  # the API's largest page (GET /jobs and GET /dlq)
COMMANDS = (
    "submit",
    "get",
    "list",
    "logs",
    "cancel",
    "retry",
    "dlq",
    "explain",
    "stats",
    "watch",
    "schedules",
    "types",
)


def client_module() -> ModuleType:
    """The client package, imported only when a client command runs (under its one name, `taskq`)."""
    return importlib.import_module("taskq")


class UsageError(Exception):
    """A bad option value the parser could not catch by itself (exit status 2); the message names it."""


# ---------------------------------------------------------------------------------------- pure parsing


def parse_payload(raw: str) -> dict[str, Any]:
    """`--payload`'s JSON object, given inline or as `@path` to a file holding it."""
    text = raw
    if raw.startswith("@"):
        path = raw[1:]
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise UsageError(f"--payload: cannot read {path}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--payload must be a JSON object, got {type(value).__name__}")
    return value


def parse_run_at(raw: str) -> datetime:
    """`--run-at`: an ISO 8601 time with its timezone (a bare local time would mean different instants
    on different machines)."""
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"--run-at must be an ISO 8601 time such as 2030-01-01T09:00:00Z, got {raw!r}") from None
    if when.tzinfo is None:
        raise UsageError(f"--run-at needs a timezone (Z or +hh:mm), got {raw!r}")
    return when


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {raw!r}")
    return value


def _limit(raw: str) -> float | None:
    """`--max-running` / `--max-starts-per-second`: a positive number, or `none` to lift the limit."""
    if raw.strip().lower() == "none":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or none, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number or none, got {raw!r}")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {raw!r}")
    return value


# -------------------------------------------------------------------------------------------- parser


def add_parsers(commands: Any) -> None:
    """Adds the client commands to `taskq`'s subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("TASKQ_URL") or DEFAULT_URL,
        help=f"the service's base URL (default: TASKQ_URL, else {DEFAULT_URL})",
    )
    common.add_argument(
        "--api-key", default=os.environ.get("TASKQ_API_KEY") or None, help="an API key (default: TASKQ_API_KEY)"
    )
    common.add_argument("--json", action="store_true", help="machine output: JSON (one line per event when following)")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help, parents=[common])
        return parser

    submit = add("submit", "submit a job and print it")
    submit.add_argument("type", metavar="TYPE", help="the job type, e.g. send_email")
    submit.add_argument("--payload", help="a JSON object, or @file.json")
    submit.add_argument("--priority", choices=PRIORITIES)
    submit.add_argument("--cpu", type=_positive, metavar="N", help="CPU units the job needs")
    submit.add_argument("--mem", type=_positive, metavar="MB", help="memory in MB the job needs")
    submit.add_argument(
        "--after", action="extend", nargs="+", default=[], metavar="JOB_ID", help="jobs that must succeed first"
    )
    submit.add_argument("--job-id", metavar="ID", help="the job's id (makes the submit idempotent)")
    submit.add_argument("--timeout", type=_seconds, metavar="S", help="seconds an attempt may run")
    submit.add_argument("--max-attempts", type=_positive, metavar="N", help="attempts in all, the first included")
    submit.add_argument("--run-at", metavar="ISO", help="not before this time, e.g. 2030-01-01T09:00:00Z")
    submit.add_argument("--wait", action="store_true", help="wait for the job to end; exit 1 unless it succeeded")

    add("get", "show a job").add_argument("job_id", metavar="ID")
    listing = add("list", "list jobs, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--type", metavar="T")
    listing.add_argument("--priority", choices=PRIORITIES)
    listing.add_argument("--limit", type=_positive, default=50, metavar="N", help="jobs in all (default 50)")
    logs = add("logs", "print a job's log lines")
    logs.add_argument("job_id", metavar="ID")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job ends")
    add("cancel", "cancel a job").add_argument("job_id", metavar="ID")
    add("retry", "re-drive a failed job (and its upstream_failed descendants)").add_argument("job_id", metavar="ID")
    dlq = add("dlq", "list the dead letter queue (failed jobs), newest first")
    dlq.add_argument("--limit", type=_positive, default=50, metavar="N", help="jobs in all (default 50)")
    add("explain", "why a job is where it is (the scheduler's view)").add_argument("job_id", metavar="ID")
    add("stats", "capacity, resources in use and jobs by status")
    watch = add("watch", "follow job events live (until interrupted)")
    which = watch.add_mutually_exclusive_group()
    which.add_argument("job_id", metavar="ID", nargs="?", help="only this job")
    which.add_argument("--type", metavar="T", help="only jobs of this type")

    schedules = add("schedules", "cron schedules: list, get, create, pause, resume, delete")
    actions = schedules.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every schedule with its next fire time", parents=[common])
    for action, text in (("get", "show a schedule"), ("pause", "pause"), ("resume", "resume from now")):
        actions.add_parser(action, help=text, parents=[common]).add_argument("schedule_id", metavar="ID")
    actions.add_parser("delete", help="delete (its jobs stay)", parents=[common]).add_argument(
        "schedule_id", metavar="ID"
    )
    create = actions.add_parser("create", help="create a schedule", parents=[common])
    create.add_argument("schedule_id", metavar="ID", help="1-100 characters of A-Z a-z 0-9 . _ -")
    create.add_argument("--cron", required=True, help="five fields, six with seconds first, or @daily etc.")
    create.add_argument("--type", required=True, metavar="T", help="the job type each tick submits")
    create.add_argument("--payload", help="the job's payload: a JSON object, or @file.json")
    create.add_argument("--timezone", metavar="TZ", help="an IANA timezone (default UTC)")
    create.add_argument("--overlap", choices=("skip", "allow"), help="skip: not while the last run is live")
    create.add_argument("--catch-up", choices=("none", "one", "all"), help="ticks missed during downtime")
    create.add_argument("--priority", choices=PRIORITIES)
    create.add_argument("--timeout", type=_seconds, metavar="S", help="seconds an attempt may run")
    create.add_argument("--paused", action="store_true", help="create it paused")

    types = add("types", "job types and their controls: list, pause, resume, set")
    type_actions = types.add_subparsers(dest="action", required=True)
    type_actions.add_parser("list", help="every type with its controls and live jobs", parents=[common])
    for action, text in (("pause", "hold the type's waiting jobs (running ones finish)"), ("resume", "resume")):
        type_actions.add_parser(action, help=text, parents=[common]).add_argument("job_type", metavar="TYPE")
    limits = type_actions.add_parser("set", help="set the type's limits", parents=[common])
    limits.add_argument("job_type", metavar="TYPE")
    limits.add_argument("--max-running", type=_limit, default=argparse.SUPPRESS, metavar="N|none")
    limits.add_argument("--max-starts-per-second", type=_limit, default=argparse.SUPPRESS, metavar="R|none")


# --------------------------------------------------------------------------------------------- running


def run(args: argparse.Namespace) -> int:
    """Runs one client command: 0 on success, 1 for a refused request or a job that did not succeed
    under --wait, 2 for a bad option value."""
    try:
        command = _COMMANDS[args.command]
        prepared = _prepare(args)
    except UsageError as exc:
        print(f"taskq: {exc}", file=sys.stderr)
        return 2
    taskq = client_module()
    try:
        with taskq.Client(args.url, api_key=args.api_key) as client:
            code: int = command(client, args, prepared)
            return code
    except taskq.TaskqError as exc:
        print(f"taskq: {problem_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `taskq watch | head`: the reader left, which is not an error
        sys.stderr.close()
        return 0


def problem_line(exc: Any) -> str:
    """A refused request (a `taskq.TaskqError`) in one line: status, title, detail and the fields at fault
    (with their message unless the detail already says it)."""
    head = f"{exc.status} {exc.title}" if exc.status is not None else exc.title
    text = f"{head}: {exc.detail}" if exc.detail else head
    fields = [
        e["field"] if not e.get("message") or e["message"] in text else f"{e['field']}: {e['message']}"
        for e in exc.errors
        if e.get("field")
    ]
    return f"{text} (field: {'; '.join(fields)})" if fields else text


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """The submit options that need checking beyond argparse (raises UsageError)."""
    if args.command == "schedules" and args.action == "create":
        return {"payload": parse_payload(args.payload) if args.payload is not None else None}
    if args.command == "types" and args.action == "set":
        limits = {name: getattr(args, name) for name in ("max_running", "max_starts_per_second") if name in args}
        if not limits:
            raise UsageError("types set needs --max-running or --max-starts-per-second")
        if limits.get("max_running") is not None and not float(limits["max_running"]).is_integer():
            raise UsageError(f"--max-running must be a whole number, got {limits['max_running']:g}")
        return {k: int(v) if k == "max_running" and v is not None else v for k, v in limits.items()}
    if args.command != "submit":
        return {}
    resources = None
    if args.cpu is not None or args.mem is not None:
        resources = {
            **({"cpu_units": args.cpu} if args.cpu is not None else {}),
            **({"memory_mb": args.mem} if args.mem is not None else {}),
        }
    return {
        "payload": parse_payload(args.payload) if args.payload is not None else None,
        "job_id": args.job_id,
        "priority": args.priority,
        "resources": resources,
        "depends_on": args.after or None,
        "retry": {"max_attempts": args.max_attempts} if args.max_attempts is not None else None,
        "timeout": args.timeout,
        "run_at": parse_run_at(args.run_at) if args.run_at is not None else None,
    }


def _emit(value: Any, *, line: bool = False) -> None:
    """One JSON document (indented, or one line when following a stream)."""
    import msgspec

    data = msgspec.to_builtins(value)
    print(json.dumps(data) if line else json.dumps(data, indent=2), flush=True)


def _show(args: argparse.Namespace, value: Any, human: Callable[[Any], str]) -> None:
    if args.json:
        _emit(value)
    else:
        print(human(value), flush=True)


def _submit(client: Client, args: argparse.Namespace, spec: dict[str, Any]) -> int:
    job = client.submit(args.type, **spec)
    if not args.wait:
        _show(args, job, _job_line)
        return 0
    if not args.json:
        print(_job_line(job), flush=True)
    job = client.wait(job.job_id)
    _show(args, job, _job_line)
    return 0 if job.status == "succeeded" else 1


def _get(client: Client, args: argparse.Namespace, _: dict[str, Any]) -> int:
    job = client.get(args.job_id)
    _show(args, job, _job_details)
    return 0


def _list(client: Client, args: argparse.Namespace, _: dict[str, Any]) -> int:
    page = min(args.limit, MAX_PAGE)
    jobs = _first(client.list(args.status, args.type, args.priority, page_size=page), args.limit)
    _show(args, jobs, _table)
    return 0


def _dlq(client: Client, args: argparse.Namespace, _: dict[str, Any]) -> int:
    jobs = _first(client.dlq(page_size=min(args.limit, MAX_PAGE)), args.limit)
    _show(args, jobs, _table)
    return 0


def _logs(client: Client, args: argparse.Namespace, _: dict[str, Any]) -> int:
    lines = client.logs(args.job_id, follow=args.follow)
    if args.json and not args.follow:
        _emit(list(lines))
        return 0
    for entry in lines:
        if args.json:
            _emit(entry, line=True)
        else:
            print(_log_line(entry), flush=True)
    return 0


def _cancel(client: Client, args: argparse.Namespace, _: dict[str, Any]) -> int:
    job = client.cancel(args.job_id)
    _show(args, job, _job_line)
    return 0


def _retry(client: Client, args: argparse.Namespace, _: dict[str, Any]) -> int:
    job = client.retry(args.job_id)
    _show(args, job, _job_line)
    return 0


def _explain(client: Client, args: argparse.Namespace, _: dict[str, Any]) -> int:
    found = client.explain(args.job_id)
    if args.json:
        _emit(found)
        return 0
    for key, value in found.items():
        print(f"{key + ':':<20} {value if isinstance(value, str | int | float) else json.dumps(value)}")
    return 0


def _stats(client: Client, args: argparse.Namespace, _: dict[str, Any]) -> int:
    stats = client.stats()
    if args.json:
        _emit(stats)
        return 0
    for name, r in (("capacity", stats.capacity), ("in use", stats.resources_in_use), ("free", stats.resources_free)):
        print(f"{name + ':':<10} {r.cpu_units} CPU, {r.memory_mb} MB")
    print("jobs:      " + (", ".join(f"{s} {n}" for s, n in stats.jobs_by_status.items()) or "none"))
    return 0


def _watch(client: Client, args: argparse.Namespace, _: dict[str, Any]) -> int:
    events = client.stream(job_id=args.job_id, type=args.type)
    if args.json:
        for item in events:
            _emit(item, line=True)
        return 0
    if sys.stdout.isatty():
        from service.live_view import show

        show(events)
        return 0
    for item in events:
        print(_event_line(item), flush=True)
    return 0


def _schedules(client: Client, args: argparse.Namespace, spec: dict[str, Any]) -> int:
    if args.action == "list":
        found = client.schedules()
        _show(args, found, lambda items: "\n".join(_schedule_line(s) for s in items) or "no schedules")
        return 0
    if args.action == "delete":
        client.delete_schedule(args.schedule_id)
        if not args.json:
            print(f"deleted {args.schedule_id}")
        return 0
    if args.action == "create":
        job = {"priority": args.priority, "timeout": args.timeout}
        schedule = client.create_schedule(
            args.schedule_id,
            args.cron,
            args.type,
            spec["payload"],
            timezone=args.timezone,
            overlap=args.overlap,
            catch_up=args.catch_up,
            paused=args.paused or None,
            **{k: v for k, v in job.items() if v is not None},
        )
    elif args.action == "pause":
        schedule = client.pause_schedule(args.schedule_id)
    elif args.action == "resume":
        schedule = client.resume_schedule(args.schedule_id)
    else:
        schedule = client.schedule(args.schedule_id)
    _show(args, schedule, _schedule_details)
    return 0


def _types(client: Client, args: argparse.Namespace, limits: dict[str, Any]) -> int:
    if args.action == "list":
        _show(args, client.types(), _types_table)
        return 0
    if args.action == "set":
        changed = client.set_type(args.job_type, **limits)
    elif args.action == "pause":
        changed = client.pause_type(args.job_type)
    else:
        changed = client.resume_type(args.job_type)
    _show(args, [changed], _types_table)
    return 0


_COMMANDS: dict[str, Callable[[Client, argparse.Namespace, dict[str, Any]], int]] = {
    "submit": _submit,
    "get": _get,
    "list": _list,
    "logs": _logs,
    "cancel": _cancel,
    "retry": _retry,
    "dlq": _dlq,
    "explain": _explain,
    "stats": _stats,
    "watch": _watch,
    "schedules": _schedules,
    "types": _types,
}
assert set(_COMMANDS) == set(COMMANDS)


# -------------------------------------------------------------------------------------- human output


def _first(jobs: Iterator[Job], limit: int) -> list[Job]:
    found = []
    for job in jobs:
        found.append(job)
        if len(found) >= limit:
            break
    return found


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value is not None else "-"


def _job_line(job: Job) -> str:
    place = f", position {job.position_in_queue}" if job.position_in_queue is not None else ""
    error = f": {job.error}" if job.error else ""
    return f"{job.job_id} {job.status} ({job.type}, {job.priority}{place}){error}"


def _job_details(job: Job) -> str:
    r = job.resource_requirements
    rows = [
        ("job_id", job.job_id),
        ("type", job.type),
        ("status", job.status + (" (cancel requested)" if job.cancel_requested else "")),
        ("priority", job.priority),
        ("resources", f"{r.cpu_units} CPU, {r.memory_mb} MB"),
        ("depends_on", ", ".join(job.depends_on) or "-"),
        ("attempts", f"{job.attempt_count} of {job.retry_config.max_attempts}"),
        ("timeout", f"{job.timeout_seconds:g} s" if job.timeout_seconds is not None else "-"),
        ("run_at", _when(job.run_at)),
        ("next_run_at", _when(job.next_run_at)),
        ("created_at", _when(job.created_at)),
        ("started_at", _when(job.started_at)),
        ("finished_at", _when(job.finished_at)),
        ("position", str(job.position_in_queue) if job.position_in_queue is not None else "-"),
        ("payload", json.dumps(job.payload)),
        ("result", json.dumps(job.result) if job.result is not None else "-"),
        ("error", job.error or "-"),
    ]
    lines = [f"{name + ':':<13} {value}" for name, value in rows]
    for a in job.attempts:
        end = f" -> {a.outcome}" if a.outcome else ""
        lines.append(f"  attempt {a.attempt}: {_when(a.started_at)}{end}{': ' + a.error if a.error else ''}")
    return "\n".join(lines)


def _table(jobs: Iterable[Job]) -> str:
    rows = [("JOB_ID", "TYPE", "STATUS", "PRIORITY", "ATTEMPTS", "CREATED_AT", "ERROR")]
    for job in jobs:
        error = (job.error or "")[:60]
        rows.append(
            (job.job_id, job.type, job.status, job.priority, str(job.attempt_count), _when(job.created_at), error)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]).rstrip()
        for row in rows
    )


def _schedule_line(s: Schedule) -> str:
    state = "paused" if s.paused else "next " + (_when(s.next_fire_times[0]) if s.next_fire_times else "-")
    return f"{s.schedule_id}  {s.cron} ({s.timezone})  {s.job.get('type', '?')}  {state}  last {_when(s.last_fired_at)}"


def _schedule_details(s: Schedule) -> str:
    rows = [
        ("schedule_id", s.schedule_id),
        ("cron", f"{s.cron} ({s.timezone})"),
        ("job", json.dumps(s.job)),
        ("overlap", s.overlap),
        ("catch_up", s.catch_up),
        ("paused", "yes" if s.paused else "no"),
        ("next", ", ".join(_when(t) for t in s.next_fire_times) or "-"),
        ("last_fired_at", _when(s.last_fired_at)),
        ("last_job_id", s.last_job_id or "-"),
    ]
    return "\n".join(f"{name + ':':<15} {value}" for name, value in rows)


def _types_table(found: Iterable[TypeControls]) -> str:
    rows: list[tuple[str, ...]] = [
        ("TYPE", "PAUSED", "MAX_RUNNING", "MAX_STARTS/S", "PENDING", "RUNNING", "SCHEDULED", "BLOCKED")
    ]
    for t in found:
        limit = "-" if t.max_starts_per_second is None else f"{t.max_starts_per_second:g}"
        counts = [str(t.jobs.get(s, 0)) for s in ("pending", "running", "scheduled", "blocked")]
        running = "-" if t.max_running is None else str(t.max_running)
        rows.append((t.type, "yes" if t.paused else "no", running, limit, *counts))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _log_line(entry: LogLine) -> str:
    attempt = f" #{entry.attempt}" if entry.attempt is not None else ""
    return f"{_when(entry.timestamp)} {entry.level:<7} {entry.event}{attempt}: {entry.message}"


def _event_line(item: Event | Gap) -> str:
    if isinstance(item, client_module().Gap):
        gap = cast("Gap", item)
        return f"gap: events {gap.missed_from}..{gap.available_from - 1} were pruned before they could be read"
    event = cast("Event", item)
    error = f" {event.error}" if event.error else ""
    attempt = f" #{event.attempt}" if event.attempt is not None else ""
    when = _when(event.timestamp)
    done = ""
    if event.progress is not None:
        message = f" {event.progress.message}" if event.progress.message else ""
        done = f" {event.progress.fraction:.0%}{message}"
    return f"{when} {event.seq:>6} {event.job_id} {event.type} {event.event} -> {event.status}{attempt}{done}{error}"
