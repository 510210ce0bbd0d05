"""A new job's first status: one rule for the API's commit and the scheduler's admission."""

from __future__ import annotations

import pytest

from service.model import Status, first_status


@pytest.mark.parametrize(
    ("dependencies", "run_at", "expected"),
    [
        ([], None, (Status.PENDING, None)),
        ([], 5.0, (Status.PENDING, None)),  # run_at already passed
        ([], 20.0, (Status.SCHEDULED, None)),
        ([("a", "succeeded")], 20.0, (Status.SCHEDULED, None)),
        ([("a", "succeeded"), ("b", "running")], 20.0, (Status.BLOCKED, None)),
        ([("a", None)], None, (Status.BLOCKED, None)),  # committed with it, in the same batch
        ([("a", "pending"), ("b", "failed")], None, (Status.UPSTREAM_FAILED, "dependency b failed")),
        ([("a", "cancelled"), ("b", "failed")], None, (Status.UPSTREAM_FAILED, "dependency a cancelled")),
        ([("a", "missing")], None, (Status.UPSTREAM_FAILED, "dependency a missing")),
        ([("a", "upstream_failed")], 20.0, (Status.UPSTREAM_FAILED, "dependency a upstream_failed")),
    ],
)
def test_first_status(dependencies: list[tuple[str, str | None]], run_at: float | None, expected: object) -> None:
    assert first_status(dependencies, run_at, now=10.0) == expected
