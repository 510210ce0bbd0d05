"""`GET /metrics` after a real run: every series the Grafana dashboard and the Prometheus alert rules
query is on the scrape, and the counters and gauges moved as the jobs did."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.telemetry import CATALOGUE
from tests.conftest import Service, wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "taskq.json"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
METRIC_NAME = re.compile(r"\btaskq_[a-z0-9_]+")


def referenced_metrics() -> set[str]:
    """Every `taskq_*` series the dashboard's panels and the alert rules query."""

    def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for item in items for p in [item, *panels(item.get("panels", []))]]

    exprs = [
        str(target["expr"])
        for panel in panels(json.loads(DASHBOARD.read_text())["panels"])
        for target in panel.get("targets", [])
    ]
    exprs += [str(rule["expr"]) for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in METRIC_NAME.findall(expr)}


def scrape(service: Service) -> list[Sample]:
    response = service.http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The one sample of `name` with exactly `labels`, besides the `node` label every series carries."""
    found = [s.value for s in samples if s.name == name and _own(s.labels) == labels]
    assert len(found) <= 1, f"several {name}{labels} series: {found}"
    return found[0] if found else None


def _own(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != "node"}


def test_scrape_has_every_queried_series_and_counts_the_run(service_factory: Callable[..., Service]) -> None:
    service = service_factory(TASKQ_CPU_UNITS="8", TASKQ_MEMORY_MB="4096").start()
    service.submit(job_id="metrics-ok", type="quick_task", priority="high")
    service.submit(
        job_id="metrics-fails",
        type="external_api",
        priority="normal",
        payload={"fail_times": 9},
        retry_config={"max_attempts": 2, "initial_delay_seconds": 0},
    )
    service.submit(
        job_id="metrics-times-out",
        type="long_running",
        priority="low",
        payload={"duration_seconds": 30},
        timeout_seconds=0.3,
        retry_config={"max_attempts": 1},
    )
    service.wait_status("metrics-ok", "succeeded")
    fails = service.wait_status("metrics-fails", "failed")
    timed_out = service.wait_status("metrics-times-out", "failed")
    assert [a["outcome"] for a in fails["attempts"]] == ["failed", "failed"]
    assert [a["outcome"] for a in timed_out["attempts"]] == ["timed_out"]

    # The scheduler records a turn's metrics just after committing it, so the API can show a job's end a
    # moment before the scrape counts it: poll until the whole run is counted.
    def counted() -> list[Sample] | None:
        samples = scrape(service)
        done = (
            total(samples, "taskq_jobs_finished_total") >= 4
            and value(samples, "taskq_dlq_size") == 2
            and total(samples, "taskq_resources_in_use") == 0
        )
        return samples if done else None

    samples = wait_until(
        counted,
        timeout=10,
        what="the run to be counted on /metrics",
        detail=lambda: [
            (s.name, s.labels, s.value)
            for s in scrape(service)
            if s.name in ("taskq_jobs_finished_total", "taskq_dlq_size", "taskq_resources_in_use")
        ],
    )

    # Every series names its node: a cluster's nodes are scraped one by one (one node here, named by
    # default after its host and port).
    nodes = {s.labels.get("node") for s in samples if s.name.startswith("taskq_")}
    assert nodes == {f"{socket.gethostname()}:{service.port}"}, nodes

    # Every series the dashboard and the alert rules query is on the scrape (histograms as _bucket etc.).
    scraped = {s.name for s in samples}
    referenced = referenced_metrics()
    assert referenced, "the dashboard and alert rules query no taskq_* metric"
    assert not referenced - scraped, f"queried but not on /metrics: {sorted(referenced - scraped)}"
    # ...and the catalogue's names are exactly what a scrape shows, for what this run exercised.
    for metric in CATALOGUE:
        series = metric.scraped + ("_bucket" if metric.kind == "histogram" else "")
        if metric.name != "taskq_stream_disconnects":  # only a slow WebSocket consumer produces it
            assert series in scraped, f"{series} ({metric.actor}) is missing from /metrics"

    # Submissions and attempts.
    assert total(samples, "taskq_jobs_submitted_total") == 3
    assert total(samples, "taskq_jobs_submitted_total", type="long_running", priority="low") == 1
    assert total(samples, "taskq_jobs_started_total") == 4  # 1 + 2 attempts + 1
    assert total(samples, "taskq_jobs_started_total", backfilled="false") + total(
        samples, "taskq_jobs_started_total", backfilled="true"
    ) == total(samples, "taskq_jobs_started_total")
    assert total(samples, "taskq_jobs_finished_total", outcome="succeeded") == 1
    assert total(samples, "taskq_jobs_finished_total", outcome="failed", type="external_api") == 2
    assert total(samples, "taskq_jobs_finished_total", outcome="timed_out", type="long_running") >= 1
    assert total(samples, "taskq_job_retries_total") >= 1
    assert total(samples, "taskq_job_retries_total", type="external_api") == 1

    # Histograms: one wait per start, one run time per finished attempt.
    assert total(samples, "taskq_wait_time_seconds_count") == 4
    assert total(samples, "taskq_wait_time_seconds_bucket", priority="high", le="+Inf") == 1
    assert total(samples, "taskq_run_time_seconds_count", outcome="timed_out") == 1
    timed_out_run = total(samples, "taskq_run_time_seconds_sum", outcome="timed_out")
    assert 0.3 <= timed_out_run < 30, timed_out_run  # killed at its 0.3 s timeout, not after its 30 s sleep
    assert total(samples, "taskq_scheduler_turn_duration_seconds_count") > 0
    assert total(samples, "taskq_http_requests_total", method="POST", route="/jobs", status="201") == 3
    assert total(samples, "taskq_http_request_duration_seconds_count", method="POST", route="/jobs") == 3

    # Gauges: the dead letter queue holds both failed jobs; nothing runs or waits; capacity is the setting.
    assert value(samples, "taskq_dlq_size") == 2
    assert len(service.http.get("/dlq").json()["items"]) == 2
    assert total(samples, "taskq_queue_depth", status="pending") == 0
    assert total(samples, "taskq_queue_depth", status="running") == 0
    assert value(samples, "taskq_capacity", resource="cpu_units") == 8
    assert value(samples, "taskq_capacity", resource="memory_mb") == 4096
    assert value(samples, "taskq_resources_in_use", resource="cpu_units") == 0
    assert value(samples, "taskq_utilization", resource="cpu_units") == 0
    assert value(samples, "taskq_oldest_waiting_age_seconds") == 0
    assert {s.labels["actor"]: s.value for s in samples if s.name == "taskq_actor_restarts"} == {
        "api": 0,
        "scheduler": 0,
        "supervisor": 0,
    }
