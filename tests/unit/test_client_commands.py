"""The pure parts of the `taskq` client commands: option values checked before any request, and how a
refused request is told in one line."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.client_commands import UsageError, parse_payload, parse_run_at, problem_line
from tests.conftest import ROOT


def test_a_payload_is_an_inline_json_object_or_a_file_holding_one(tmp_path: Path) -> None:
    assert parse_payload('{"a": 1}') == {"a": 1}
    file = tmp_path / "p.json"
    file.write_text('{"to": "x@example.com"}', encoding="utf-8")
    assert parse_payload(f"@{file}") == {"to": "x@example.com"}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{nope", "--payload is not valid JSON"),
        ("[1]", "--payload must be a JSON object, got list"),
        ("3", "--payload must be a JSON object, got int"),
        ("@/no/such/file.json", "--payload: cannot read /no/such/file.json"),
    ],
)
def test_a_bad_payload_is_a_usage_error_naming_the_option(raw: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_payload(raw)
    assert str(caught.value).startswith(says)


def test_run_at_needs_an_iso_time_with_a_timezone() -> None:
    assert parse_run_at("2999-01-01T00:00:00Z") == datetime(2999, 1, 1, tzinfo=UTC)
    with pytest.raises(UsageError, match="--run-at needs a timezone"):
        parse_run_at("2999-01-01T00:00:00")
    with pytest.raises(UsageError, match="--run-at must be an ISO 8601 time"):
        parse_run_at("tomorrow")


def test_a_problem_is_one_line_with_its_fields() -> None:
    import taskq

    refused = taskq.Invalid(422, "Invalid request", "bad type", [{"field": "type", "message": "unknown job type"}])
    assert problem_line(refused) == "422 Invalid request: bad type (field: type: unknown job type)"
    same = taskq.Invalid(422, "Invalid request", "type: unknown", [{"field": "type", "message": "type: unknown"}])
    assert problem_line(same) == "422 Invalid request: type: unknown (field: type)"
    assert problem_line(taskq.NotFound(404, "Not Found", "no job x")) == "404 Not Found: no job x"
    assert problem_line(taskq.ConnectionFailed(None, "Unreachable", "refused")) == "Unreachable: refused"


def test_importing_the_cli_loads_no_client_module() -> None:
    # `taskq serve` imports service.cli: the client's libraries must stay out of that path.
    client = "{'taskq', 'httpx', 'websockets', 'rich'}"
    code = f"import sys, service.cli; print(sorted({{m.split('.')[0] for m in sys.modules}} & {client}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
