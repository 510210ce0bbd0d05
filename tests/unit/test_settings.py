"""Settings are read from TASKQ_* variables, validated once, and rejected with one phrasing of error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import SETTINGS, Settings, SettingsError, load

README = Path(__file__).parents[2] / "README.md"


def test_an_empty_environment_loads_every_default() -> None:
    assert load({}) == Settings(
        database_url=None,
        data_dir="./.data",
        host="127.0.0.1",
        port=8000,
        cpu_units=8,
        memory_mb=4096,
        shutdown_grace_seconds=30.0,
        handlers=(),
        aging_interval_seconds=60.0,
        kill_grace_seconds=2.0,
        default_timeout_seconds=3600.0,
        spare_workers=4,
        max_log_lines=1000,
        retention_succeeded=7 * 86400.0,
        retention_failed=30 * 86400.0,
        stream_buffer_bytes=1048576,
        max_stream_clients=1000,
        max_connections=2000,
        max_live_jobs=1_000_000,
        rate_limit_submit=None,
        rate_limit_requests=None,
        max_body_bytes=1048576,
        log_level="INFO",
        auth="auto",
        bootstrap_key=None,
        allowed_origins=(),
        cluster_secret=None,
        node_name=None,
        cluster_port=0,
        advertise_host="127.0.0.1",
        leader_lease_seconds=5.0,
        cluster_tls_cert=None,
        cluster_tls_key=None,
        cluster_tls_ca=None,
    )


def test_given_values_override_the_defaults_and_are_parsed_to_their_types() -> None:
    settings = load(
        {
            "TASKQ_PORT": " 9000 ",
            "TASKQ_CPU_UNITS": "2",
            "TASKQ_MEMORY_MB": "512",
            "TASKQ_SHUTDOWN_GRACE_SECONDS": "0.5",
            "TASKQ_AGING_INTERVAL_SECONDS": "0.001",
            "TASKQ_LOG_LEVEL": "debug",
        }
    )

    assert (settings.port, settings.cpu_units, settings.memory_mb) == (9000, 2, 512)
    assert (settings.shutdown_grace_seconds, settings.aging_interval_seconds) == (0.5, 0.001)
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("7d", 604800.0), ("12h", 43200.0), ("30m", 1800.0), ("90s", 90.0), ("2.5", 2.5), (" 1 H ", 3600.0),
     ("0", None), ("forever", None)],
)  # fmt: skip
def test_a_retention_is_a_duration_or_forever(raw: str, seconds: float | None) -> None:
    assert load({"TASKQ_RETENTION_SUCCEEDED": raw}).retention_succeeded == seconds


@pytest.mark.parametrize("raw", ["-1d", "1w", "d", "", "1e3", "nan", "101000d"])
def test_a_retention_that_is_not_a_duration_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match="TASKQ_RETENTION_FAILED to be a duration"):
        load({"TASKQ_RETENTION_FAILED": raw})


def test_load_without_a_mapping_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_PORT", "8123")

    assert load().port == 8123


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("TASKQ_PORT", "abc", "expected TASKQ_PORT to be an integer 1-65535, got 'abc'"),
        ("TASKQ_PORT", "0", "expected TASKQ_PORT to be an integer 1-65535, got '0'"),
        ("TASKQ_PORT", "70000", "expected TASKQ_PORT to be an integer 1-65535, got '70000'"),
        ("TASKQ_PORT", "", "expected TASKQ_PORT to be an integer 1-65535, got ''"),
        ("TASKQ_CPU_UNITS", "-1", "expected TASKQ_CPU_UNITS to be an integer 1-1000000, got '-1'"),
        ("TASKQ_MEMORY_MB", "x", "expected TASKQ_MEMORY_MB to be an integer 1-1099511627776, got 'x'"),
        (
            "TASKQ_SHUTDOWN_GRACE_SECONDS",
            "nan",
            "expected TASKQ_SHUTDOWN_GRACE_SECONDS to be a number 0-86400, got 'nan'",
        ),
        (
            "TASKQ_HANDLERS",
            "not a module",
            "expected TASKQ_HANDLERS to be comma-separated Python module names, got 'not a module'",
        ),
        ("TASKQ_LOG_LEVEL", "loud", "expected TASKQ_LOG_LEVEL to be one of DEBUG, INFO, WARNING, ERROR, got 'loud'"),
        (
            "TASKQ_AGING_INTERVAL_SECONDS",
            "0",
            "expected TASKQ_AGING_INTERVAL_SECONDS to be a number 0.001-31536000, got '0'",
        ),
        ("TASKQ_DATA_DIR", "  ", "expected TASKQ_DATA_DIR to be a directory path, got '  '"),
    ],
)
def test_a_bad_value_raises_settings_error_naming_the_variable_its_rule_and_the_value(
    variable: str, raw: str, message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load({variable: raw})

    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("raw", "modules"),
    [
        ("", ()),
        ("myjobs", ("myjobs",)),
        ("myjobs.billing, reports ,etl.tasks_v2", ("myjobs.billing", "reports", "etl.tasks_v2")),
        ("a,,b,", ("a", "b")),
    ],
)
def test_handlers_are_parsed_as_comma_separated_module_names(raw: str, modules: tuple[str, ...]) -> None:
    assert load({"TASKQ_HANDLERS": raw}).handlers == modules


@pytest.mark.parametrize("raw", ["", "   "])
def test_an_empty_database_url_means_no_external_database(raw: str) -> None:
    assert load({"TASKQ_DATABASE_URL": raw}).database_url is None


def test_a_database_url_is_kept_as_given() -> None:
    url = "postgresql://taskq:secret@db.internal:5432/taskq"

    assert load({"TASKQ_DATABASE_URL": url}).database_url == url


def test_every_setting_is_documented_in_the_readme_configuration_table() -> None:
    """Expected to fail until README.md exists with a configuration table naming every TASKQ_* setting."""
    assert README.is_file(), f"{README} does not exist; it must document every setting in a configuration table"
    table_rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.lstrip().startswith("|")]
    documented = {name for row in table_rows for name in re.findall(r"\bTASKQ_[A-Z0-9_]+\b", row)}

    missing = [setting.env for setting in SETTINGS if setting.env not in documented]

    assert not missing, f"settings missing from README.md's configuration table: {missing}"


def test_cluster_tls_needs_its_three_files_and_a_cluster() -> None:
    secret = {"TASKQ_CLUSTER_SECRET": "x" * 40}
    with pytest.raises(SettingsError, match="TASKQ_CLUSTER_TLS_CA to be set too"):
        load({**secret, "TASKQ_CLUSTER_TLS_CERT": "/c.pem", "TASKQ_CLUSTER_TLS_KEY": "/k.pem"})
    with pytest.raises(SettingsError, match="TASKQ_CLUSTER_SECRET to be set"):
        load({"TASKQ_CLUSTER_TLS_CERT": "/c", "TASKQ_CLUSTER_TLS_KEY": "/k", "TASKQ_CLUSTER_TLS_CA": "/a"})
    settings = load(
        {**secret, "TASKQ_CLUSTER_TLS_CERT": "/c", "TASKQ_CLUSTER_TLS_KEY": "/k", "TASKQ_CLUSTER_TLS_CA": "/a"}
    )
    assert settings.cluster_tls


def test_a_bad_cluster_secret_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as error:
        load({"TASKQ_CLUSTER_SECRET": "too-short-secret"})
    assert "too-short-secret" not in str(error.value)
