"""The one place that decides how an attempt ended, from what the worker said and how it exited.

| worker reported          | kill reason        | exit                 | outcome                     |
|--------------------------|--------------------|----------------------|-----------------------------|
| ok result                | any                | any                  | succeeded (it finished first)|
| PermanentError           | any                | any                  | permanent_failure           |
| other exception          | any                | any                  | failed                      |
| nothing                  | timed_out/cancelled/interrupted/memory_exceeded | any | that reason     |
| nothing                  | none               | signal or code != 0  | crashed                     |
| nothing                  | none               | code 0               | crashed (no result)         |

An attempt killed while it still waited for a worker (none was at hand) takes the kill reason as its
outcome: `describe_unstarted`.
"""

from __future__ import annotations

import signal

from service.model import Outcome
from service.protocol import WorkerResult


def classify(result: WorkerResult | None, exit_code: int, kill_reason: Outcome | None) -> tuple[Outcome, str | None]:
    """`exit_code` as from `os.waitstatus_to_exitcode`: negative for a signal."""
    if result is not None:
        if result.ok:
            return Outcome.SUCCEEDED, None
        return (Outcome.PERMANENT_FAILURE if result.permanent else Outcome.FAILED), result.error
    if kill_reason is not None:
        return kill_reason, _kill_message(kill_reason, exit_code)
    return Outcome.CRASHED, describe_exit(exit_code)


def describe_exit(exit_code: int) -> str:
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"worker killed by {name} before reporting a result"
    if exit_code == 0:
        return "worker exited without reporting a result"
    return f"worker exited with code {exit_code} before reporting a result"


def describe_unstarted(reason: Outcome) -> str:
    return {
        Outcome.TIMED_OUT: "timed out",
        Outcome.CANCELLED: "cancelled",
        Outcome.INTERRUPTED: "interrupted by shutdown",
        Outcome.MEMORY_EXCEEDED: "memory limit exceeded",
    }.get(reason, reason.value) + " before a worker took it"


def _kill_message(reason: Outcome, exit_code: int) -> str:
    how = describe_exit(exit_code).replace(" before reporting a result", "")
    return {
        Outcome.TIMED_OUT: f"timed out: {how}",
        Outcome.CANCELLED: f"cancelled: {how}",
        Outcome.INTERRUPTED: f"interrupted by shutdown: {how}",
        Outcome.MEMORY_EXCEEDED: f"memory limit exceeded: {how}",
    }.get(reason, how)
