"""The one catalogue of metrics: every name, unit, attribute set and meaning, and the recording and
Prometheus rendering of each process's figures.

Each actor process counts its own metrics in plain dictionaries (a counter: label values -> total; a
histogram: label values -> bucket counts and sum) and exposes them through a Prometheus collector read at
scrape time. Recording is a dict lookup and an addition: the API records 3 figures per request and the
scheduler ~4 per job, where the OpenTelemetry SDK spent 5-10 µs on each (a frozenset of the attributes, a
lock, a view lookup). The names, units, labels and bucket boundaries are exactly those the OpenTelemetry
Prometheus exporter produced before, so the dashboard and the alerts did not change. `GET /metrics` on
the API port is the node's one scrape target: the API renders its own registry and appends the
scheduler's, which it asks for over the scheduler link (the supervisor's figures reach the scheduler in
`SupervisorStats`). The dashboard in ops/grafana and the alert rules in ops/prometheus query exactly the
`scraped` names below; a test checks they exist on /metrics after a run.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.registry import Collector

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


Labels = tuple[tuple[str, Any], ...]  # the keyword arguments of one call, in their order


class Telemetry:
    """The figures of one process, for the catalogue's metrics of its actor.

    Series are keyed by the call's `labels.items()` as given, the cheapest key to build; two call sites
    naming the same labels in another order make two keys, which `render` merges into one series. The
    figures are read and written on the process's one event loop thread, so no lock is taken."""

    def __init__(self, actor: str, gauges: dict[str, Callback] | None = None) -> None:
        self.metrics = [m for m in CATALOGUE if m.actor == actor]
        self._counters: dict[str, dict[Labels, float]] = {}
        # label key -> [count of bucket 0, ..., count of +Inf, sum]
        self._histograms: dict[str, dict[Labels, list[float]]] = {}
        self._gauges = dict(gauges or {})
        for metric in self.metrics:
            if metric.kind == "counter":
                self._counters[metric.name] = {}
            elif metric.kind == "histogram":
                self._histograms[metric.name] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def add(self, name: str, value: float = 1, **labels: Any) -> None:
        series = self._counters[name]
        key = tuple(labels.items())
        series[key] = series.get(key, 0) + value

    def record(self, name: str, value: float, **labels: Any) -> None:
        series = self._histograms[name]
        key = tuple(labels.items())
        buckets = series.get(key)
        if buckets is None:
            buckets = series[key] = [0] * (len(SECONDS_BUCKETS) + 1) + [0.0]
        # Bucket i counts values in (bound i-1, bound i], as Prometheus' `le` (and OpenTelemetry) say.
        buckets[bisect_left(SECONDS_BUCKETS, value)] += 1
        buckets[-1] += value

    def render(self) -> str:
        return generate_latest(self.registry).decode()

    def shutdown(self) -> None:
        """Nothing to flush: the figures live in this object and are read at scrape time."""

    def collect(self) -> Iterator[Family]:
        """The Prometheus families of this process's metrics that have a value, in catalogue order."""
        for metric in self.metrics:
            family: Family
            if metric.kind == "counter":
                counters = _merge(self._counters[metric.name], _add_totals)
                family = CounterMetricFamily(metric.scraped, metric.description, labels=metric.attributes)
                for labels, total in counters.items():
                    family.add_metric(_values(labels, metric.attributes), total)
            elif metric.kind == "histogram":
                histograms = _merge(self._histograms[metric.name], _add_buckets)
                family = HistogramMetricFamily(metric.scraped, metric.description, labels=metric.attributes)
                for labels, buckets in histograms.items():
                    cumulative, running = [], 0.0
                    for bound, count in zip((*_BOUNDS, "+Inf"), buckets[:-1], strict=True):
                        running += count
                        cumulative.append((bound, running))
                    family.add_metric(_values(labels, metric.attributes), cumulative, buckets[-1])
            elif metric.name in self._gauges:
                family = GaugeMetricFamily(metric.scraped, metric.description, labels=metric.attributes)
                try:
                    observed = list(self._gauges[metric.name]())
                except Exception:  # a broken gauge must not take the other metrics off the scrape
                    log.exception("gauge %s failed", metric.name)
                    continue
                for value, attributes in observed:
                    family.add_metric(_values(tuple(attributes.items()), metric.attributes), value)
            else:
                continue
            if family.samples:
                yield family


_BOUNDS = tuple(str(float(bound)) for bound in SECONDS_BUCKETS)  # "0.0005", "1.0": as the exporter wrote them


class _Collector(Collector):
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterable[Family]:
        return self.telemetry.collect()


def _merge(series: dict[Labels, Any], add: Callable[[Any, Any], Any]) -> dict[Labels, Any]:
    """The series keyed by their labels in name order: calls that named them in another order meet."""
    merged: dict[Labels, Any] = {}
    for key, value in list(series.items()):
        normal = tuple(sorted(key))
        merged[normal] = add(merged[normal], value) if normal in merged else value
    return merged


def _add_totals(a: float, b: float) -> float:
    return a + b


def _add_buckets(a: list[float], b: list[float]) -> list[float]:
    return [x + y for x, y in zip(a, b, strict=True)]


def _values(labels: Labels, names: tuple[str, ...]) -> list[str]:
    """Label values in the catalogue's order, as strings the way the OpenTelemetry exporter wrote them
    (a non-string as JSON: True -> "true", 3 -> "3"); a label a call did not give is empty."""
    given = dict(labels)
    return [_text(given.get(name, "")) for name in names]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
