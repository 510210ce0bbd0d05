"""The one catalogue of metrics: every name, unit, attribute set and meaning, and the OpenTelemetry
set-up of each process.

Each actor process has its own OpenTelemetry `MeterProvider`, read by the OpenTelemetry Prometheus
exporter into a private Prometheus registry. The hot path stays a dict update: `add` adds to a total
per label set, which an `ObservableCounter` reports at collection; `record` appends to a small buffer per
series, which is fed in bulk to an OpenTelemetry `Histogram` at collection (`render`) or when it grows
past `FLUSH_AT` values. A direct SDK call costs 8-12 µs (a Measurement, a frozenset of the attributes,
locks, a view lookup) and the API records 3 figures per request, the scheduler ~4 per job. The names,
units, labels and bucket boundaries are those of the exporter, which the dashboard and the alerts query.
`GET /metrics` on the API port is the node's one scrape target: the API renders its own registry and
appends the scheduler's, which it asks for over the scheduler link (the supervisor's figures reach the
scheduler in `SupervisorStats`). The dashboard in ops/grafana and the alert rules in ops/prometheus query
exactly the `scraped` names below; a test checks they exist on /metrics after a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, generate_latest

log = logging.getLogger("taskq.telemetry")

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
        "taskq_jobs_pruned",
        "counter",
        "{job}",
        ("status",),
        "finished jobs deleted by retention, with their attempts and logs",
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
    Metric("taskq_worker_forks", "gauge", "{process}", ("node",), "workers forked by the zygote", "scheduler"),
    Metric("taskq_spare_workers", "gauge", "{process}", ("node",), "pre-forked idle workers ready", "scheduler"),
)

BY_NAME = {metric.name: metric for metric in CATALOGUE}

Callback = Callable[[], Iterable[tuple[float, dict[str, Any]]]]


Labels = tuple[tuple[str, Any], ...]  # the keyword arguments of one call, in their order

FLUSH_AT = 256  # values of one histogram series buffered at most: then fed to OpenTelemetry (~1.5 ms), scrape or not


class Telemetry:
    """The instruments of one process, created from the catalogue, behind a cheap recording path.

    Series are keyed by the call's `labels.items()` as given, the cheapest key to build; two call sites
    naming the same labels in another order make two keys, which meet again in OpenTelemetry (counters
    are merged before they are observed, histogram attributes are a set in the SDK). The figures are read
    and written on the process's one event loop thread, so no lock is taken here."""

    def __init__(self, actor: str, gauges: dict[str, Callback] | None = None, node: str | None = None) -> None:
        self.metrics = [m for m in CATALOGUE if m.actor == actor]
        # Every series of the process carries its node (a cluster's nodes are scraped one by one); a
        # series that names a node of its own (an executor's figures, reported to the leader) keeps it.
        self.constant: dict[str, Any] = {} if node is None else {"node": node}
        self._counters: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, list[float]]] = {}  # values not yet given to OpenTelemetry
        self._instruments: dict[str, Any] = {}
        self.registry = CollectorRegistry()
        reader = PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False, registry=self.registry)
        self.provider = MeterProvider(
            metric_readers=[reader],
            views=[View(instrument_type=Histogram, aggregation=ExplicitBucketHistogramAggregation(SECONDS_BUCKETS))],
            exemplar_filter=AlwaysOffExemplarFilter(),  # the exporter drops exemplars; skip their bookkeeping
            shutdown_on_exit=False,  # a pull reader has nothing to flush; atexit would keep every provider alive
        )
        meter = self.provider.get_meter("taskq")
        for metric in self.metrics:
            if metric.kind == "counter":
                totals = self._counters[metric.name] = {}
                meter.create_observable_counter(
                    metric.name, [_totals(totals, self.constant)], metric.unit, metric.description
                )
            elif metric.kind == "histogram":
                self._histograms[metric.name] = {}
                self._instruments[metric.name] = meter.create_histogram(metric.name, metric.unit, metric.description)
            elif gauges is not None and metric.name in gauges:
                meter.create_observable_gauge(
                    metric.name,
                    [_observe(metric.name, gauges[metric.name], self.constant)],
                    metric.unit,
                    metric.description,
                )

    def add(self, name: str, value: float = 1, **labels: Any) -> None:
        series = self._counters[name]
        key = tuple(labels.items())
        series[key] = series.get(key, 0) + value

    def record(self, name: str, value: float, **labels: Any) -> None:
        series = self._histograms[name]
        key = tuple(labels.items())
        values = series.get(key)
        if values is None:
            series[key] = [value]
        else:
            values.append(value)
            if len(values) >= FLUSH_AT:
                self._flush(name, key, values)

    def render(self) -> str:
        """The Prometheus text of this process's metrics: the buffered histogram values are recorded into
        OpenTelemetry first, then the exporter collects (observable counters and gauges call back)."""
        for name, series in self._histograms.items():
            for key, values in list(series.items()):
                if values:
                    self._flush(name, key, values)
        return generate_latest(self.registry).decode()

    def shutdown(self) -> None:
        self.provider.shutdown()

    def _flush(self, name: str, key: Labels, values: list[float]) -> None:
        record, attributes = self._instruments[name].record, {**self.constant, **dict(key)}
        for value in values:
            record(value, attributes)
        values.clear()


def _totals(
    series: dict[Labels, float], constant: dict[str, Any]
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """An observable counter's callback: the cumulative total of each label set, the keys that named the
    same labels in another order merged (an observable instrument keeps one observation per set)."""

    def observe(_: CallbackOptions) -> Iterable[Observation]:
        merged: dict[Labels, float] = {}
        for key, total in list(series.items()):
            normal = tuple(sorted(key))
            merged[normal] = merged.get(normal, 0) + total
        return [Observation(total, {**constant, **dict(key)}) for key, total in merged.items()]

    return observe


def _observe(
    name: str, callback: Callback, constant: dict[str, Any]
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        try:
            return [Observation(value, {**constant, **attributes}) for value, attributes in callback()]
        except Exception:  # a broken gauge must not take the other metrics off the scrape
            log.exception("gauge %s failed", name)
            return []

    return observe
