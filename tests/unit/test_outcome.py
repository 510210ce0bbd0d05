"""`classify`: every row of the table in `service.supervisor.outcome`'s docstring, in one place."""

from __future__ import annotations

import pytest

from service.model import Outcome
from service.protocol import WorkerResult
from service.supervisor.outcome import classify, describe_unstarted

OK = WorkerResult(ok=True, result={"rows": 3})
PERMANENT = WorkerResult(ok=False, error="PermanentError: the invoice does not exist", permanent=True)
EXCEPTION = WorkerResult(ok=False, error="ValueError: bad input")
SIGKILL, SIGTERM, SIGSEGV = -9, -15, -11


@pytest.mark.parametrize(
    ("result", "kill_reason", "exit_code", "outcome", "error"),
    [
        # An ok result means the handler finished first, whatever happened to the worker afterwards.
        pytest.param(OK, None, 0, Outcome.SUCCEEDED, None, id="ok-result-succeeds"),
        pytest.param(OK, Outcome.TIMED_OUT, SIGKILL, Outcome.SUCCEEDED, None, id="ok-result-beats-timeout"),
        pytest.param(OK, Outcome.CANCELLED, SIGTERM, Outcome.SUCCEEDED, None, id="ok-result-beats-cancel"),
        pytest.param(OK, None, SIGSEGV, Outcome.SUCCEEDED, None, id="ok-result-beats-a-crash-after-it"),
        # PermanentError is never retried, whatever the kill reason or exit.
        pytest.param(PERMANENT, None, 0, Outcome.PERMANENT_FAILURE, PERMANENT.error, id="permanent-error"),
        pytest.param(
            PERMANENT,
            Outcome.MEMORY_EXCEEDED,
            SIGKILL,
            Outcome.PERMANENT_FAILURE,
            PERMANENT.error,
            id="permanent-error-beats-kill-reason",
        ),
        # Any other exception is an ordinary (retryable) failure.
        pytest.param(EXCEPTION, None, 0, Outcome.FAILED, EXCEPTION.error, id="exception-fails"),
        pytest.param(EXCEPTION, None, 1, Outcome.FAILED, EXCEPTION.error, id="exception-beats-nonzero-exit"),
        pytest.param(
            EXCEPTION, Outcome.INTERRUPTED, SIGTERM, Outcome.FAILED, EXCEPTION.error, id="exception-beats-kill-reason"
        ),
        # No result, but the supervisor killed the worker for a reason: that reason is the outcome.
        pytest.param(
            None, Outcome.TIMED_OUT, SIGKILL, Outcome.TIMED_OUT, ("timed out", "SIGKILL"), id="nothing-timed-out"
        ),
        pytest.param(
            None, Outcome.CANCELLED, SIGTERM, Outcome.CANCELLED, ("cancelled", "SIGTERM"), id="nothing-cancelled"
        ),
        pytest.param(
            None,
            Outcome.INTERRUPTED,
            SIGTERM,
            Outcome.INTERRUPTED,
            ("interrupted", "SIGTERM"),
            id="nothing-interrupted",
        ),
        pytest.param(
            None,
            Outcome.MEMORY_EXCEEDED,
            SIGKILL,
            Outcome.MEMORY_EXCEEDED,
            ("memory", "SIGKILL"),
            id="nothing-memory-exceeded",
        ),
        pytest.param(
            None,
            Outcome.INTERRUPTED,
            0,
            Outcome.INTERRUPTED,
            ("interrupted", "without reporting a result"),
            id="nothing-kill-reason-beats-clean-exit",
        ),
        # No result and no kill reason: the worker crashed; the message says how it died.
        pytest.param(None, None, SIGSEGV, Outcome.CRASHED, ("SIGSEGV",), id="nothing-sigsegv-crashed"),
        pytest.param(None, None, SIGKILL, Outcome.CRASHED, ("SIGKILL",), id="nothing-sigkill-crashed"),
        pytest.param(None, None, -99, Outcome.CRASHED, ("signal 99",), id="nothing-unnamed-signal-crashed"),
        pytest.param(None, None, 3, Outcome.CRASHED, ("code 3",), id="nothing-nonzero-exit-crashed"),
        pytest.param(None, None, 0, Outcome.CRASHED, ("without reporting a result",), id="nothing-exit-0-crashed"),
    ],
)
def test_classify_decides_the_outcome_and_error_of_an_attempt(
    result: WorkerResult | None,
    kill_reason: Outcome | None,
    exit_code: int,
    outcome: Outcome,
    error: str | tuple[str, ...] | None,
) -> None:
    """`error` is the exact message when a string or None, or fragments the message must contain when a tuple."""
    got_outcome, got_error = classify(result, exit_code, kill_reason)

    assert got_outcome == outcome
    if isinstance(error, tuple):
        assert got_error is not None
        missing = [fragment for fragment in error if fragment not in got_error]
        assert not missing, f"{got_error!r} does not mention {missing}"
    else:
        assert got_error == error


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (Outcome.CANCELLED, "cancelled before a worker took it"),
        (Outcome.INTERRUPTED, "interrupted by shutdown before a worker took it"),
        (Outcome.TIMED_OUT, "timed out before a worker took it"),
    ],
)
def test_an_attempt_killed_while_it_waited_for_a_worker_says_so(reason: Outcome, error: str) -> None:
    assert describe_unstarted(reason) == error
