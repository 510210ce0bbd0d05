"""When to send a request again: a pure decision, so that it is tested without a clock or a server.

Only idempotent calls are retried: GETs, and submits that name their job (a `job_id`, an
`Idempotency-Key`, or a batch whose every job has an id), because the server answers a replay of those
with the job it already has. A submit without an id is never retried: if the first request was committed
and only its answer was lost, a second one would create a second job.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({429, 503})


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped per wait and bounded in total (`budget` seconds since the
    first attempt). A server's `Retry-After` replaces the computed delay: it knows when to come back."""

    initial: float = 0.1
    multiplier: float = 2.0
    cap: float = 5.0
    budget: float = 20.0
    jitter: float = 0.1

    def delay(self, attempt: int, elapsed: float, retry_after: float | None, unit: float) -> float | None:
        """Seconds to wait before attempt `attempt + 1` (attempts count from 0), or None to give up.
        `unit` is a random number in [0, 1) (injected, so tests are exact)."""
        if retry_after is not None:
            wait = retry_after
        else:
            wait = min(self.cap, self.initial * self.multiplier**attempt)
            wait *= 1 + self.jitter * (2 * unit - 1)
        if elapsed + wait > self.budget:
            return None  # waiting would pass the budget: fail now with the answer we have
        return wait


def should_retry(status: int | None, idempotent: bool) -> bool:
    """`status` None: no answer came (connection refused, reset, timed out)."""
    return idempotent and (status is None or status in RETRYABLE_STATUS)
