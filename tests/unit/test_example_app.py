"""The example application that ops/Dockerfile ships (ops/example_app/myapp/jobs.py), unit-tested the way
the README tells users to test their handlers: with `taskq.testing`, no service."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
from taskq import PayloadMismatch, PermanentError, testing

APP = Path(__file__).resolve().parents[2] / "ops" / "example_app"


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(APP))
    return importlib.import_module("myapp.jobs")


def test_welcome_email_sends_to_the_address_and_logs_it(jobs: ModuleType) -> None:
    done = testing.run(jobs.welcome_email, to="ada@example.com", subject="Welcome")
    assert done.result == {"sent_to": "ada@example.com"}
    assert done.ctx.logs == [("info", "sending 'Welcome' to ada@example.com")]


def test_welcome_email_refuses_a_bad_address_for_good(jobs: ModuleType) -> None:
    with pytest.raises(PermanentError, match="not an address"):
        testing.run(jobs.welcome_email, to="nobody", subject="Welcome")
    with pytest.raises(PayloadMismatch, match="subject"):
        testing.run(jobs.welcome_email, to="ada@example.com")


def test_export_reports_progress_and_mails_the_user(jobs: ModuleType) -> None:
    done = testing.run(jobs.export_rows, user_id=7, rows=250)
    assert done.result == {"rows": 250}
    assert [f for f, _ in done.ctx.progress_updates] == [0.0, 0.4, 0.8, 1.0]
    [mail] = done.ctx.submitted
    assert (mail.type, mail.job_id) == ("welcome_email", "test-job.1")
    assert mail.payload == {"to": "user-7@example.com", "subject": "Your export is ready"}


def test_in_eager_mode_the_export_runs_its_mail_too(jobs: ModuleType) -> None:
    with testing.eager() as ran:
        export = jobs.export_rows.defer(user_id=3, rows=100)
    assert export.status == "succeeded"
    assert [(job.type, job.status) for job in ran] == [("export_rows", "succeeded")]
    assert export.progress is not None
    assert export.progress.message == "exported"
