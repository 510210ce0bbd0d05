"""The one catalogue of metrics: every name, unit, attribute set and meaning, and the OpenTelemetry
set-up of each process.

Each actor process records its own metrics with the OpenTelemetry SDK into a private Prometheus
registry (the OpenTelemetry Prometheus exporter). `GET /metrics` on the API port is the node's one scrape
target: the API renders its own registry and appends the scheduler's, which it asks for over the
scheduler link (the supervisor's figures reach the scheduler in `SupervisorStats`). The dashboard in
ops/grafana and the alert rules in ops/prometheus query exactly the `scraped` names below; a test checks
they exist on /metrics after a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 3600.0,
)  # fmt: skip


@dataclass(frozen=True)
class Metric:
    name: str  # the OpenTelemetry instrument name
    kind: str  # counter | histogram | gauge
    unit: str  # "s" for seconds (Prometheus appends _seconds); "{job}"-style units add no suffix
    attributes: tuple[str, ...]
    description: str
    actor: str  # the process that records it

    @property
    def scraped(self) -> str:
        """The name Prometheus stores (histograms add _bucket/_sum/_count to it)."""
        suffix = "_seconds" if self.unit == "s" else ""
        return self.name + suffix + ("_total" if self.kind == "counter" else "")


CATALOGUE: tuple[Metric, ...] = (
    # --- api
    Metric(
        "taskq_http_requests", "counter", "{request}", ("method", "route", "status"), "HTTP requests answered", "api"
    ),
    Metric("taskq_http_request_duration", "histogram", "s", ("method", "route"), "HTTP request latency", "api"),
    Metric(
        "taskq_jobs_submitted", "counter", "{job}", ("type", "priority"), "jobs created by POST /jobs(/batch)", "api"
    ),
    Metric("taskq_submit_commit_duration", "histogram", "s", (), "one group commit of submissions", "api"),
    Metric("taskq_db_round_trip", "histogram", "s", ("actor",), "a trivial query's round trip to PostgreSQL", "api"),
    Metric("taskq_stream_subscribers", "gauge", "{subscriber}", (), "open WebSocket stream subscriptions", "api"),
    Metric("taskq_stream_disconnects", "counter", "{subscriber}", ("reason",), "stream clients disconnected", "api"),
    # --- scheduler
    Metric(
        "taskq_jobs_started",
        "counter",
        "{attempt}",
        ("type", "priority", "backfilled"),
        "attempts started",
        "scheduler",
    ),
    Metric(
        "taskq_jobs_finished",
        "counter",
        "{attempt}",
        ("type", "priority", "outcome"),
        "attempts ended, by outcome (timed_out, crashed, memory_exceeded, ...)",
        "scheduler",
    ),
    Metric(
        "taskq_job_retries", "counter", "{retry}", ("type",), "retries scheduled after a failed attempt", "scheduler"
    ),
    Metric(
        "taskq_queue_depth", "gauge", "{job}", ("status", "priority"), "live jobs by status and priority", "scheduler"
    ),
    Metric("taskq_wait_time", "histogram", "s", ("priority",), "time from ready (pending) to start", "scheduler"),
    Metric("taskq_run_time", "histogram", "s", ("type", "outcome"), "time an attempt held its resources", "scheduler"),
    Metric(
        "taskq_capacity", "gauge", "{unit}", ("resource",), "capacity of the node: cpu_units, memory_mb", "scheduler"
    ),
    Metric(
        "taskq_resources_in_use", "gauge", "{unit}", ("resource",), "resources held by running attempts", "scheduler"
    ),
    Metric("taskq_utilization", "gauge", "{ratio}", ("resource",), "resources in use over capacity", "scheduler"),
    Metric("taskq_dlq_size", "gauge", "{job}", (), "failed jobs: the dead letter queue", "scheduler"),
    Metric(
        "taskq_oldest_waiting_age", "gauge", "s", (), "how long the longest-waiting pending job has waited", "scheduler"
    ),
    Metric(
        "taskq_scheduler_turn_duration", "histogram", "s", (), "one scheduler loop turn, commit included", "scheduler"
    ),
    Metric(
        "taskq_scheduler_commit_duration", "histogram", "s", (), "the scheduler's one transaction per turn", "scheduler"
    ),
    Metric("taskq_actor_restarts", "gauge", "{restart}", ("actor",), "times the root restarted an actor", "scheduler"),
    Metric("taskq_worker_forks", "gauge", "{process}", (), "worker processes forked by the supervisor", "scheduler"),
    Metric("taskq_spare_workers", "gauge", "{process}", (), "pre-forked idle workers ready", "scheduler"),
)

BY_NAME = {metric.name: metric for metric in CATALOGUE}

Callback = Callable[[], Iterable[tuple[float, dict[str, Any]]]]


class Telemetry:
    """The instruments of one process, created from the catalogue."""

    def __init__(self, actor: str, gauges: dict[str, Callback] | None = None) -> None:
        self.registry = CollectorRegistry()
        reader = PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False, registry=self.registry)
        self.provider = MeterProvider(metric_readers=[reader])
        meter: Meter = self.provider.get_meter("taskq")
        self._instruments: dict[str, Any] = {}
        for metric in CATALOGUE:
            if metric.actor != actor:
                continue
            if metric.kind == "counter":
                self._instruments[metric.name] = meter.create_counter(metric.name, metric.unit, metric.description)
            elif metric.kind == "histogram":
                self._instruments[metric.name] = meter.create_histogram(
                    metric.name, metric.unit, metric.description, explicit_bucket_boundaries_advisory=SECONDS_BUCKETS
                )
            elif gauges is not None and metric.name in gauges:
                meter.create_observable_gauge(
                    metric.name, [_observe(gauges[metric.name])], metric.unit, metric.description
                )

    def add(self, name: str, value: float = 1, **attributes: Any) -> None:
        self._instruments[name].add(value, attributes)

    def record(self, name: str, value: float, **attributes: Any) -> None:
        self._instruments[name].record(value, attributes)

    def render(self) -> str:
        return generate_latest(self.registry).decode()

    def shutdown(self) -> None:
        self.provider.shutdown()


def _observe(callback: Callback) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attributes) for value, attributes in callback()]

    return observe
