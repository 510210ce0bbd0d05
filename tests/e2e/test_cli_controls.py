"""`taskq schedules ...` and `taskq types ...`, run as the real CLI (through the Python client) against a
real service. `shared` is test_cli's module fixture, so this module gets a service of its own: the tests
change type controls, which others would see."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Service
from tests.e2e.test_cli import shared, taskq, unique

__all__ = ["shared"]  # a fixture: used by name


def test_schedules_create_list_get_pause_resume_delete(shared: Service) -> None:
    url = shared.base_url
    name = unique("nightly")
    created = taskq(
        url, "schedules", "create", name, "--cron", "30 2 * * *", "--timezone", "Europe/Berlin",
        "--type", "quick_task", "--payload", '{"duration_seconds": 0}', "--overlap", "skip", "--paused",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "paused:         yes" in created.stdout
    listed = taskq(url, "schedules", "list")
    assert f"{name}  30 2 * * * (Europe/Berlin)  quick_task  paused" in listed.stdout
    resumed = taskq(url, "schedules", "resume", name, "--json")
    assert resumed.returncode == 0, resumed.stderr
    shown = json.loads(resumed.stdout)
    assert shown["paused"] is False
    assert shown["overlap"] == "skip"
    assert shown["job"] == {
        "type": "quick_task",
        "priority": "normal",
        "payload": {"duration_seconds": 0},
        "resource_requirements": {"cpu_units": 1, "memory_mb": 128},
        "timeout_seconds": None,
        "retry_config": shown["job"]["retry_config"],
    }
    assert len(shown["next_fire_times"]) == 5
    got = taskq(url, "schedules", "get", name)
    (upcoming,) = [line for line in got.stdout.splitlines() if line.startswith("next:")]
    assert upcoming.count(",") == 4  # the next five ticks
    assert taskq(url, "schedules", "pause", name).returncode == 0
    assert taskq(url, "schedules", "delete", name).stdout.strip() == f"deleted {name}"
    gone = taskq(url, "schedules", "get", name)
    assert gone.returncode == 1
    assert "404 Schedule not found" in gone.stderr


def test_schedules_create_refuses_a_bad_cron_naming_the_field(shared: Service) -> None:
    refused = taskq(
        shared.base_url, "schedules", "create", unique("bad"), "--cron", "61 * * * *", "--type", "quick_task"
    )
    assert refused.returncode == 1
    assert "422" in refused.stderr
    assert "field: cron" in refused.stderr


def test_types_pause_set_list_resume(shared: Service) -> None:
    url = shared.base_url
    paused = taskq(url, "types", "pause", "report")
    assert paused.returncode == 0, paused.stderr
    header, row = paused.stdout.splitlines()
    assert header.split() == [
        "TYPE",
        "PAUSED",
        "MAX_RUNNING",
        "MAX_STARTS/S",
        "PENDING",
        "RUNNING",
        "SCHEDULED",
        "BLOCKED",
    ]
    assert row.split()[:4] == ["report", "yes", "-", "-"]
    limited = taskq(url, "types", "set", "report", "--max-running", "2", "--max-starts-per-second", "2.5", "--json")
    assert limited.returncode == 0, limited.stderr
    (shown,) = json.loads(limited.stdout)
    assert (shown["paused"], shown["max_running"], shown["max_starts_per_second"]) == (True, 2, 2.5)
    lifted = taskq(url, "types", "set", "report", "--max-running", "none", "--json")
    (shown,) = json.loads(lifted.stdout)
    assert (shown["max_running"], shown["max_starts_per_second"]) == (None, 2.5)
    listed = {t["type"]: t for t in json.loads(taskq(url, "types", "list", "--json").stdout)}
    assert listed["report"]["paused"] is True
    assert "quick_task" in listed
    assert taskq(url, "types", "resume", "report").returncode == 0
    cleared = taskq(url, "types", "set", "report", "--max-starts-per-second", "none", "--json")
    (shown,) = json.loads(cleared.stdout)
    assert (shown["paused"], shown["max_running"], shown["max_starts_per_second"]) == (False, None, None)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["types", "set", "report"], 2, "needs --max-running or --max-starts-per-second"),
        (["types", "set", "report", "--max-running", "1.5"], 2, "whole number"),
        (["types", "set", "report", "--max-running", "-1"], 2, "positive number or none"),
        (["types", "pause", "mine_bitcoin"], 1, "404 Type not found"),
    ],
)
def test_types_refuses_bad_options(shared: Service, args: list[str], code: int, says: str) -> None:
    refused = taskq(shared.base_url, *args)
    assert refused.returncode == code, (refused.stdout, refused.stderr)
    assert says in refused.stderr
