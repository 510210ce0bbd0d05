"""Per-type dispatch controls: pause a job type, cap how many of its attempts run at once, and cap how
fast its attempts start. Pure: no I/O, no clock (every call that needs the time is passed `now`).

The scheduler core asks `admits(type, now)` of every job dispatch considers. A job held back keeps its
place in the queue and is passed over, so it never becomes the backfill head that would hold jobs of
other types behind it. `started` is called for each start dispatch decides, `ended` when an attempt
ends (whatever its outcome). The scheduler is the single place that starts jobs, so the limits hold for
the whole cluster.

`max_starts_per_second` is a token bucket on the scheduler's clock: it holds up to one second's worth
of starts (at least one) and refills continuously, so over any window of `w` seconds at most
`rate * w + burst` attempts of the type start. A bucket starts full when its rate is set.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

PAUSED = "type paused"
# A refill computed for the instant a token is due can land a rounding error short of it.
_EPSILON = 1e-9


@dataclass(slots=True)
class _Control:
    paused: bool = False
    max_running: int | None = None
    rate: float | None = None  # max_starts_per_second
    tokens: float = 0.0
    stamp: float = 0.0  # when `tokens` was last brought up to date

    @property
    def burst(self) -> float:
        assert self.rate is not None
        return max(1.0, self.rate)

    def refill(self, now: float) -> None:
        if self.rate is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    @property
    def idle(self) -> bool:
        """Nothing to enforce: the entry can go."""
        return not self.paused and self.max_running is None and self.rate is None


class TypeControls:
    def __init__(self) -> None:
        self._controls: dict[str, _Control] = {}
        # Running attempts of every type, controlled or not: a max_running set later must count the
        # attempts already running.
        self._running: Counter[str] = Counter()
        # Types whose bucket ran dry, with when the next token arrives: dispatch must look again then,
        # although no job became pending and no resources were freed.
        self._refills: dict[str, float] = {}
        self._changed = False

    def set(
        self, job_type: str, *, paused: bool, max_running: int | None, max_starts_per_second: float | None, now: float
    ) -> None:
        """The type's controls as stored (every field: a field left out of a PATCH keeps its stored value)."""
        control = self._controls.setdefault(job_type, _Control())
        if max_starts_per_second != control.rate:
            control.rate = max_starts_per_second
            control.tokens = control.burst if max_starts_per_second is not None else 0.0
            control.stamp = now
            self._refills.pop(job_type, None)
        control.paused = paused
        control.max_running = max_running
        self._changed = True  # a resume or a higher limit can open starts: dispatch must look again
        if control.idle:
            del self._controls[job_type]

    def controls(self, job_type: str) -> tuple[bool, int | None, float | None]:
        control = self._controls.get(job_type)
        if control is None:
            return False, None, None
        return control.paused, control.max_running, control.rate

    def admits(self, job_type: str, now: float) -> str | None:
        """None when a job of this type may start now; otherwise why not (it decides nothing: dispatch
        and explain both ask)."""
        control = self._controls.get(job_type)
        if control is None:
            return None
        if control.paused:
            return PAUSED
        if control.max_running is not None and self._running[job_type] >= control.max_running:
            return f"type at max_running ({self._running[job_type]} of {control.max_running} running)"
        if control.rate is not None:
            control.refill(now)
            if control.tokens < 1.0 - _EPSILON:
                # Someone waits for the next token: the scheduler must look again when it arrives.
                self._refills[job_type] = now + (1.0 - control.tokens) / control.rate
                return f"type start rate limit (max_starts_per_second {control.rate:g})"
        return None

    def started(self, job_type: str, now: float) -> None:
        """Dispatch decided to start a job of this type (it was admitted just before)."""
        self._running[job_type] += 1
        control = self._controls.get(job_type)
        if control is not None and control.rate is not None:
            control.refill(now)
            control.tokens -= 1.0

    def adopt(self, job_type: str) -> None:
        """A running attempt found at a rebuild: it counts against max_running and spends no token."""
        self._running[job_type] += 1

    def ended(self, job_type: str) -> None:
        """An attempt of this type ended, whatever its outcome."""
        left = self._running[job_type] - 1
        if left > 0:
            self._running[job_type] = left
        else:
            del self._running[job_type]

    def running(self, job_type: str) -> int:
        return self._running[job_type]

    def due(self, now: float) -> bool:
        """Whether a dispatch pass could now start what the last one held back: a control changed, or a
        bucket that ran dry has a token again. Answers yes once per such event."""
        changed, self._changed = self._changed, False
        ready = [t for t, at in self._refills.items() if at <= now]
        for job_type in ready:
            del self._refills[job_type]
        return changed or bool(ready)

    def next_wakeup(self) -> float | None:
        """When the next dry bucket gets a token back (the scheduler wakes then), if any is dry."""
        return min(self._refills.values(), default=None)
