"""Telemetry records into plain dictionaries, hands the figures to the OpenTelemetry SDK in bulk at scrape
time and renders what the OpenTelemetry Prometheus exporter produces: names, units, labels and bucket
boundaries."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.telemetry import CATALOGUE, FLUSH_AT, SECONDS_BUCKETS, Telemetry


def samples(telemetry: Telemetry) -> list[Sample]:
    return [s for family in text_string_to_metric_families(telemetry.render()) for s in family.samples]


def one(found: list[Sample], name: str, **labels: str) -> float:
    values = [s.value for s in found if s.name == name and s.labels == labels]
    assert len(values) == 1, (name, labels, [s for s in found if s.name == name])
    return values[0]


def test_counters_sum_per_label_set_whatever_the_keyword_order() -> None:
    telemetry = Telemetry("api")
    telemetry.add("taskq_http_requests", method="POST", route="/jobs", status="201")
    telemetry.add("taskq_http_requests", status="201", route="/jobs", method="POST")
    telemetry.add("taskq_http_requests", method="GET", route="/jobs", status="200")
    telemetry.add("taskq_jobs_submitted", 250, type="quick_task", priority="high")
    found = samples(telemetry)
    assert one(found, "taskq_http_requests_total", method="POST", route="/jobs", status="201") == 2
    assert one(found, "taskq_http_requests_total", method="GET", route="/jobs", status="200") == 1
    assert one(found, "taskq_jobs_submitted_total", type="quick_task", priority="high") == 250


def test_histogram_buckets_are_cumulative_with_inclusive_upper_bounds() -> None:
    telemetry = Telemetry("api")
    for value in (0.0001, 0.0005, 0.0006, 1.0, 7200.0):
        telemetry.record("taskq_http_request_duration", value, method="POST", route="/jobs")
    found = samples(telemetry)
    name = "taskq_http_request_duration_seconds"
    labels = {"method": "POST", "route": "/jobs"}
    buckets = {s.labels["le"]: s.value for s in found if s.name == name + "_bucket"}
    assert list(buckets) == [*(str(b) for b in SECONDS_BUCKETS), "+Inf"]
    assert buckets["0.0005"] == 2  # 0.0005 itself falls in le="0.0005"
    assert buckets["0.001"] == 3
    assert buckets["1.0"] == 4
    assert buckets["3600.0"] == 4
    assert buckets["+Inf"] == 5
    assert one(found, name + "_count", **labels) == 5
    assert one(found, name + "_sum", **labels) == pytest.approx(0.0001 + 0.0005 + 0.0006 + 1.0 + 7200.0)


def test_histograms_without_labels_and_gauges_read_at_scrape_time() -> None:
    subscribers = [0]
    telemetry = Telemetry("api", gauges={"taskq_stream_subscribers": lambda: [(subscribers[0], {})]})
    telemetry.record("taskq_submit_commit_duration", 0.002)
    subscribers[0] = 7
    found = samples(telemetry)
    assert one(found, "taskq_submit_commit_duration_seconds_count") == 1
    assert one(found, "taskq_stream_subscribers") == 7


def test_a_failing_gauge_leaves_the_rest_of_the_scrape() -> None:
    def broken() -> list[tuple[float, dict[str, str]]]:
        raise RuntimeError("gauge broke")

    telemetry = Telemetry(
        "scheduler", gauges={"taskq_dlq_size": broken, "taskq_capacity": lambda: [(4, {"resource": "cpu_units"})]}
    )
    telemetry.add("taskq_job_retries", type="quick_task")
    found = samples(telemetry)
    assert one(found, "taskq_capacity", resource="cpu_units") == 4
    assert one(found, "taskq_job_retries_total", type="quick_task") == 1
    assert not [s for s in found if s.name == "taskq_dlq_size"]


def test_only_metrics_with_values_are_rendered_and_names_follow_the_catalogue() -> None:
    telemetry = Telemetry("scheduler")
    assert telemetry.render() == ""
    for metric in CATALOGUE:
        if metric.actor != "scheduler":
            continue
        labels = dict.fromkeys(metric.attributes, "x")
        if metric.kind == "counter":
            telemetry.add(metric.name, **labels)
        elif metric.kind == "histogram":
            telemetry.record(metric.name, 0.01, **labels)
    names = {s.name for s in samples(telemetry)}
    for metric in CATALOGUE:
        if metric.actor == "scheduler" and metric.kind != "gauge":
            assert metric.scraped + ("_bucket" if metric.kind == "histogram" else "") in names


def test_a_metric_of_another_actor_is_refused() -> None:
    telemetry = Telemetry("api")
    with pytest.raises(KeyError):
        telemetry.add("taskq_jobs_started", type="x", priority="high", backfilled="false")


def test_a_histogram_buffer_is_fed_to_opentelemetry_when_full_without_a_scrape() -> None:
    telemetry = Telemetry("api")
    for _ in range(FLUSH_AT + 5):
        telemetry.record("taskq_submit_commit_duration", 0.002)
    assert len(telemetry._histograms["taskq_submit_commit_duration"][()]) == 5  # the rest is in the SDK
    assert one(samples(telemetry), "taskq_submit_commit_duration_seconds_count") == FLUSH_AT + 5
    telemetry.record("taskq_submit_commit_duration", 0.002)
    assert one(samples(telemetry), "taskq_submit_commit_duration_seconds_count") == FLUSH_AT + 6  # cumulative
