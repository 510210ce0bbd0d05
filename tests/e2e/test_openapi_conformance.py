"""The API document tells the truth: schemathesis (`st run <url>/openapi.json --checks all`) generates
requests from /openapi.json against a real service, valid and invalid ones, and checks every answer
against the document (status codes, problem+json bodies and content types, response schemas, Allow on
OPTIONS and 405, 401 without a key, no 500). The exceptions to "valid by the schema means accepted" are
listed, with their reasons, in the repository's schemathesis.toml, which `st` reads from the root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, PgServer, Service, module_service

KEY = "bootstrap-secret-for-the-openapi-tests-0123456789"
ST = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def keyed(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Service:
    log = tmp_path_factory.mktemp("openapi") / "service.log"
    service = Service(pg.fresh_database(), log, {"TASKQ_BOOTSTRAP_KEY": KEY})
    service.http.headers["Authorization"] = f"Bearer {KEY}"
    with module_service(service):
        yield service


def test_schemathesis_finds_no_answer_the_document_does_not_describe(keyed: Service, tmp_path: Path) -> None:
    # Bounded: 25 examples per operation and phase, a fixed seed (a failure can be replayed), no example
    # database left behind. About 15 s on two shared cores.
    command = [
        str(ST),
        "run",
        f"{keyed.base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "25",
        "--seed",
        "20261206",
        "--generation-database",
        "none",
        "--no-color",
        "--header",
        f"Authorization: Bearer {KEY}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    assert selected is not None, report
    assert selected[1] == selected[2], report  # every operation was tested, none filtered out
    assert " failed" not in report, report


def test_options_names_every_method_of_the_route(keyed: Service) -> None:
    for path, methods in (
        ("/jobs", "GET, OPTIONS, POST"),
        ("/jobs/batch", "OPTIONS, POST"),
        ("/jobs/abc", "GET, OPTIONS"),
        ("/keys", "GET, OPTIONS, POST"),
    ):
        response = keyed.http.options(path)
        assert response.status_code == 204
        assert response.headers["allow"] == methods, path


def test_the_document_states_this_node_s_job_types_capacity_and_key_policy(keyed: Service) -> None:
    document = keyed.http.get("/openapi.json").json()
    submission = document["components"]["schemas"]["JobSubmission"]["properties"]
    assert "quick_task" in submission["type"]["enum"]
    assert submission["resource_requirements"]["properties"]["cpu_units"]["maximum"] >= 1
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    responses = document["paths"]["/jobs"]["post"]["responses"]
    assert {"200", "201", "400", "401", "403", "409", "413", "415", "422", "429", "503"} <= set(responses)
    assert "application/problem+json" in responses["422"]["content"]
