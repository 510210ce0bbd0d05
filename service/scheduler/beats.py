"""Heartbeats and progress of running attempts, held from their arrival (`AttemptBeat`) until the
scheduler's next commit.

They decide nothing, so they wait for a commit like a worker's pid and a running attempt's log lines
(`DEFER_SECONDS` in the actor), and only the latest of each attempt is kept: a commit writes at most one
change per attempt row, however many beats arrived. A beat is written to its attempt's row (`progress`,
`progress_message`, `progress_at`, `heartbeat_at`); a progress also becomes a `progress` stream event.
Like the deferred log lines, beats held by a scheduler that dies are lost; the attempt's outcome never is.
"""

from __future__ import annotations

import msgspec

from service.protocol import AttemptBeat
from service.store.gateway import AttemptChange


class Beat(msgspec.Struct, gc=False):
    """The latest word of one attempt since the last commit."""

    job_id: str
    attempt: int
    job_type: str  # for the stream event (the job may have ended by the commit)
    level: int
    heartbeat_at: float
    progress: float | None = None  # set when a progress arrived since the last commit
    message: str | None = None
    progress_at: float | None = None

    def apply(self, change: AttemptChange) -> None:
        """Merge into the attempt's change of the turn (it may close the attempt or set its pid too)."""
        change.heartbeat_at = self.heartbeat_at
        if self.progress_at is not None:
            change.progress, change.progress_message, change.progress_at = self.progress, self.message, self.progress_at


class Beats:
    def __init__(self) -> None:
        self._latest: dict[tuple[str, int], Beat] = {}

    def __bool__(self) -> bool:
        return bool(self._latest)

    def add(self, message: AttemptBeat, job_type: str, level: int) -> None:
        """A beat of a running attempt (the caller checks it is the one running)."""
        key = (message.job_id, message.attempt)
        held = self._latest.get(key)
        if held is None:
            held = self._latest[key] = Beat(message.job_id, message.attempt, job_type, level, message.at)
        held.heartbeat_at = max(held.heartbeat_at, message.at)
        if message.progress is not None and (held.progress_at is None or message.at >= held.progress_at):
            held.progress, held.message, held.progress_at = message.progress, message.message, message.at

    def take(self) -> list[Beat]:
        taken = list(self._latest.values())
        self._latest.clear()
        return taken
