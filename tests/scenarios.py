"""The specification's five test scenarios and the circular-dependency bonus, as job lists (data only).

Used by the e2e tests (`tests/e2e/test_scheduling.py`) and by the benchmark (`scripts/bench/scenarios.py`), so
that both drive the same jobs. It lives with the tests because the tests are the authority on what the
scenarios are: the benchmark is a consumer that reports on them, and a test suite must not depend on a
benchmark script. It imports nothing from pytest, the fixtures or the service, so that importing it from
`scripts/` costs nothing. Each function returns fresh dicts: callers may change them freely.
"""

from __future__ import annotations

from typing import Any

Job = dict[str, Any]

NODE_CAPACITY: dict[str, int] = {"cpu_units": 8, "memory_mb": 4096}  # the specification's node

# Durations scaled down from the specification's minutes so that a scenario takes about a second.
S1_HOLD_SECONDS = 1.0
S3_DURATION = 0.3
S4_HEAVY_SECONDS = 0.4
S4_LIGHT_SECONDS = 0.1
S5_RETRY_DELAY = 0.2


def scenario_1_holder() -> Job:
    """A job that takes the whole node, so that scenario 1's jobs queue up behind it."""
    return {
        "job_id": "s1_hold_node",
        "type": "long_running",
        "payload": {"duration_seconds": S1_HOLD_SECONDS},
        "resource_requirements": dict(NODE_CAPACITY),
    }


def scenario_1() -> list[Job]:
    """Basic job flow: normal, critical, low; critical must start first."""
    return [
        {
            "job_id": "s1_welcome",
            "type": "send_email",
            "priority": "normal",
            "payload": {"to": "user@example.com", "template": "welcome"},
            "resource_requirements": {"cpu_units": 1, "memory_mb": 128},
        },
        {
            "job_id": "s1_alert",
            "type": "send_email",
            "priority": "critical",
            "payload": {"to": "vip@example.com", "template": "alert"},
            "resource_requirements": {"cpu_units": 1, "memory_mb": 128},
        },
        {
            "job_id": "s1_daily_summary",
            "type": "generate_report",
            "priority": "low",
            "payload": {"report_type": "daily_summary", "date": "2024-01-15"},
            "resource_requirements": {"cpu_units": 4, "memory_mb": 2048},
        },
    ]


def scenario_2() -> list[Job]:
    """Simple dependencies: a chain fetch → process → report."""
    return [
        {
            "job_id": "fetch_data_001",
            "type": "data_fetch",
            "priority": "high",
            "payload": {"source": "market_api", "symbols": ["AAPL", "GOOGL"], "duration_seconds": 0.3},
            "resource_requirements": {"cpu_units": 2, "memory_mb": 512},
        },
        {
            "job_id": "process_data_001",
            "type": "data_processing",
            "priority": "high",
            "payload": {"operation": "calculate_indicators", "duration_seconds": 0.2},
            "depends_on": ["fetch_data_001"],
            "resource_requirements": {"cpu_units": 4, "memory_mb": 1024},
        },
        {
            "job_id": "generate_report_001",
            "type": "report_generation",
            "priority": "normal",
            "payload": {"format": "pdf"},
            "depends_on": ["process_data_001"],
            "resource_requirements": {"cpu_units": 2, "memory_mb": 512},
        },
    ]


def scenario_3() -> list[Job]:
    """Complex dependency graph: two fetches → analysis → two reports → notification (8 edges)."""
    return [
        {"job_id": "fetch_prices", "type": "data_fetch", "priority": "high"},
        {"job_id": "fetch_volumes", "type": "data_fetch", "priority": "high"},
        {
            "job_id": "analyze_market",
            "type": "analysis",
            "depends_on": ["fetch_prices", "fetch_volumes"],
            "priority": "critical",
        },
        {"job_id": "trader_report", "type": "report", "depends_on": ["analyze_market"], "priority": "high"},
        {"job_id": "risk_report", "type": "report", "depends_on": ["analyze_market"], "priority": "normal"},
        {
            "job_id": "send_notifications",
            "type": "notification",
            "depends_on": ["trader_report", "risk_report"],
            "priority": "high",
        },
    ]


def scenario_4() -> list[Job]:
    """Resource contention: five 4-CPU heavies (two high) and five 1-CPU light jobs on an 8-CPU node."""
    heavy = [
        {
            "job_id": f"heavy_{i}",
            "type": "data_processing",
            "priority": "high" if i < 2 else "normal",
            "payload": {"batch_size": 10000, "duration_seconds": S4_HEAVY_SECONDS},
            "resource_requirements": {"cpu_units": 4, "memory_mb": 2048},
        }
        for i in range(5)
    ]
    light = [
        {
            "job_id": f"light_{i}",
            "type": "quick_task",
            "priority": "normal",
            "payload": {"task_id": i, "duration_seconds": S4_LIGHT_SECONDS},
            "resource_requirements": {"cpu_units": 1, "memory_mb": 256},
        }
        for i in range(5)
    ]
    return heavy + light


def scenario_5() -> list[Job]:
    """Failure and recovery: a flaky job, a timeout, a permanent failure, and dependents of two of them."""
    return [
        {
            "job_id": "unreliable_api_call",
            "type": "external_api",
            "payload": {"endpoint": "flaky_service", "fail_times": 2},
            "retry_config": {"max_attempts": 3, "backoff_multiplier": 2, "initial_delay_seconds": S5_RETRY_DELAY},
        },
        {
            "job_id": "dependent_on_flaky",
            "type": "processing",
            "depends_on": ["unreliable_api_call"],
            "retry_config": {"max_attempts": 1},
        },
        {
            "job_id": "will_timeout",
            "type": "long_running",
            "payload": {"duration_seconds": 30},
            "timeout_seconds": 1,
            "retry_config": {"max_attempts": 2, "initial_delay_seconds": S5_RETRY_DELAY},
        },
        {
            "job_id": "will_fail_permanently",
            "type": "invalid_operation",
            "payload": {"error": "division_by_zero"},
            "retry_config": {"max_attempts": 3},
        },
        {
            "job_id": "dependent_on_permanent",
            "type": "processing",
            "depends_on": ["will_fail_permanently"],
        },
    ]


def circular() -> list[Job]:
    """The bonus: a → c → b → a, which must be rejected as a whole."""
    return [
        {"job_id": "job_a", "type": "quick_task", "depends_on": ["job_c"]},
        {"job_id": "job_b", "type": "quick_task", "depends_on": ["job_a"]},
        {"job_id": "job_c", "type": "quick_task", "depends_on": ["job_b"]},
    ]
