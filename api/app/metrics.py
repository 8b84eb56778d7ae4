"""Prometheus metrics of the API.

With API_WORKERS > 1 every worker is its own process: `python -m app` then points PROMETHEUS_MULTIPROC_DIR at
a fresh folder, each worker writes its numbers there, and /metrics adds them up, so a scrape sees the whole
server whichever worker answers it. Request latency is labelled by route template, never by raw path, so a
scanner cannot blow up the number of series.
"""

import os
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.drift_reports import DriftCollector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("http_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request to full response, in the API process",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
PREDICTIONS = Counter(
    "penguins_predictions_total", "Penguins classified (each of a batch counts)", ["species"]
)
MODEL_INFO = Gauge(
    "penguins_model_info",
    "1 for the model version served (per worker)",
    ["version"],
    multiprocess_mode="liveall",
)
MODEL_LOAD_FAILURES = Counter(
    "penguins_model_load_failures_total", "Model versions refused or unreadable, by reason", ["reason"]
)


@dataclass(frozen=True, slots=True)
class LogCounters:
    """One log's counters (app/prediction_log.py), counted by its writer thread; summed across workers."""

    records: Counter
    errors: Counter
    dropped: Counter


# Every reason a log's errors and drops are counted by (app/prediction_log.py), exported at 0 from the start:
# a series born at 1 would hide its first increase from Prometheus's increase() (prometheus/alerts.yml).
LOG_ERROR_REASONS = ("disk_full", "permission", "folder_missing", "io_error")
LOG_DROP_REASONS = ("queue_full", "write_failed")


def _log_counters(log: str, what: str) -> LogCounters:
    """`penguins_<log>_log_{records,errors,dropped}_total`: the same series for each log, names bounded."""
    counters = LogCounters(
        Counter(f"penguins_{log}_log_records_total", f"{what} records written to PREDICTIONS_DIR"),
        Counter(
            f"penguins_{log}_log_errors_total",
            "Failed writes to PREDICTIONS_DIR (their records are lost), by reason",
            ["reason"],
        ),
        Counter(
            f"penguins_{log}_log_dropped_total",
            f"{what} records not written, by reason: queue_full (the writer lags), write_failed (see errors)",
            ["reason"],
        ),
    )
    for reason in LOG_ERROR_REASONS:
        counters.errors.labels(reason)
    for reason in LOG_DROP_REASONS:
        counters.dropped.labels(reason)
    return counters


PREDICTION_LOG = _log_counters("prediction", "Prediction")
FEEDBACK_LOG = _log_counters("feedback", "Feedback")
FEEDBACK = Counter(
    "penguins_feedback_total", "Labels (true species) accepted by POST /feedback, by species", ["species"]
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Any token is a valid HTTP method: label the standard ones, lump the rest, so series stay bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# `labels()` costs microseconds per call (string conversion, a lock): look each series up once.
_request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_species_series: dict[str, Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method if method in METHODS else "OTHER", status)
    series = _request_series.get(key)
    if series is None:
        series = _request_series[key] = (REQUESTS.labels(*key), LATENCY.labels(*key))
    series[0].inc()
    series[1].observe(seconds)


def count_predictions(species: str, count: int = 1) -> None:
    series = _species_series.get(species)
    if series is None:
        series = _species_series[species] = PREDICTIONS.labels(species)
    series.inc(count)


def count_species(species: Iterable[str]) -> None:
    """A batch's predictions, one series update per species."""
    for name, count in Tally(species).items():
        count_predictions(name, count)


def count_feedback(species: Iterable[str]) -> None:
    """Accepted labels, one series update per species."""
    for name, count in Tally(species).items():
        FEEDBACK.labels(name).inc(count)


def set_served_version(version: str, previous: str | None) -> None:
    if previous is not None:
        MODEL_INFO.labels(previous).set(0)
    MODEL_INFO.labels(version).set(1)


def render(artifacts_dir: Path) -> bytes:
    """This process's (or every worker's) metrics, then the newest drift report's gauges, read from disk."""
    drift = CollectorRegistry()
    drift.register(DriftCollector(artifacts_dir))
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry) + generate_latest(drift)
    return generate_latest(REGISTRY) + generate_latest(drift)


def worker_exiting() -> None:
    """Drop this worker's live gauges, so a restarted worker's old model version is not reported."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        multiprocess.mark_process_dead(os.getpid())
