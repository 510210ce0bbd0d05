"""`taskq watch` on a terminal: a table of jobs and their latest status, redrawn as events arrive.

It keeps only what the stream says (no polling), one row per job, the most recently changed first and
at most `ROWS` of them, so a busy service cannot grow it without bound. rich draws it; it is imported
only here, when a terminal asks for the live view.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from service.client_commands import client_module

if TYPE_CHECKING:
    from service.taskq import Event, Gap, Progress

ROWS = 40
STYLES = {
    "succeeded": "green",
    "failed": "red",
    "upstream_failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
}


def render(rows: dict[str, Event], note: str, progress: dict[str, Progress] | None = None) -> Table:
    """The table; a job that reported `ctx.progress` gets a bar with its percentage and message."""
    progress = progress or {}
    table = Table(title=f"taskq watch: {note}", title_justify="left", expand=False)
    for column in ("job_id", "type", "priority", "status", "attempt", "event", "at", "progress", "error"):
        table.add_column(column, no_wrap=column not in ("error", "progress"), overflow="fold")
    for event in reversed(list(rows.values())[-ROWS:]):
        at = event.timestamp.strftime("%H:%M:%S.%f")[:-3] if event.timestamp else "-"
        status = f"[{STYLES[event.status]}]{event.status}[/]" if event.status in STYLES else event.status
        attempt = str(event.attempt) if event.attempt is not None else "-"
        table.add_row(
            event.job_id,
            event.type,
            event.priority,
            status,
            attempt,
            event.event,
            at,
            _bar(progress.get(event.job_id)),
            event.error or "",
        )
    return table


def _bar(progress: Progress | None) -> Group | str:
    if progress is None:
        return ""
    fraction = min(max(progress.fraction, 0.0), 1.0)
    label = f"{fraction:.0%}" + (f" {progress.message}" if progress.message else "")
    return Group(ProgressBar(total=1.0, completed=fraction, width=20), Text(label))


def show(events: Iterable[Event | Gap]) -> None:
    """Redraws the table after each event until the stream ends or the user interrupts it."""
    gap = client_module().Gap
    rows: dict[str, Event] = {}  # insertion order = last change order: a job is moved to the end on change
    progress: dict[str, Progress] = {}  # each shown job's last `ctx.progress`, kept past its next events
    seen = 0
    with Live(render(rows, "waiting for events"), console=Console(), auto_refresh=False) as live:
        for item in events:
            if isinstance(item, gap):
                lost = cast("Gap", item)
                note = f"events {lost.missed_from}..{lost.available_from - 1} were lost (pruned)"
            else:
                event = cast("Event", item)
                seen += 1
                rows.pop(event.job_id, None)
                rows[event.job_id] = event
                if event.progress is not None:
                    progress[event.job_id] = event.progress
                while len(rows) > ROWS:
                    progress.pop(next(iter(rows)), None)
                    del rows[next(iter(rows))]
                note = f"{seen} events, {len(rows)} jobs shown, Ctrl-C to stop"
            live.update(render(rows, note, progress), refresh=True)
