"""The newest drift report of `monitor_pipeline` (ARTIFACTS_DIR/reports, see penguins_contract.reports), read
for /monitoring and for the drift and live-accuracy gauges of /metrics. Read on every use: a report is a few
kilobytes of JSON (and the page a few megabytes), and a new one appears at most once per pipeline run."""

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import penguins_contract as contract

log = logging.getLogger(__name__)

NO_REPORT = "no drift report yet: run monitor_pipeline (`make monitor`, or trigger it in Airflow)"


class ReportError(RuntimeError):
    """The newest report exists but cannot be read (the message says which file and why)."""


def _read(artifacts_dir: Path, name: str) -> bytes | None:
    folder = contract.latest_report(artifacts_dir)
    return None if folder is None else (folder / name).read_bytes()


def read_latest(artifacts_dir: Path, name: str) -> bytes | None:
    """File `name` of the newest report, or None before the first report."""
    try:
        try:
            return _read(artifacts_dir, name)
        except OSError:  # pruned between reading latest.json and its file: latest.json names a newer one now
            return _read(artifacts_dir, name)
    except contract.ContractError as err:
        raise ReportError(str(err)) from err
    except OSError as err:
        raise ReportError(f"cannot read the newest drift report's {name}: {err}") from err


def latest_report(artifacts_dir: Path) -> dict[str, Any] | None:
    raw = read_latest(artifacts_dir, contract.REPORT_JSON)
    if raw is None:
        return None
    try:
        report = json.loads(raw)
    except ValueError as err:
        raise ReportError(f"the newest drift report's {contract.REPORT_JSON} is not JSON: {err}") from err
    if not isinstance(report, dict):
        raise ReportError(f"the newest drift report's {contract.REPORT_JSON} is not a JSON object")
    return report


class DriftCollector(Collector):
    """The newest report's per-feature statistics and flags as gauges, read when /metrics is scraped (so every
    worker answers the same, in multiprocess mode too)."""

    def __init__(self, artifacts_dir: Path) -> None:
        self.artifacts_dir = artifacts_dir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            report = latest_report(self.artifacts_dir)
        except ReportError as err:
            log.warning("drift gauges left out: %s", err)
            return
        if report is None:
            return
        try:
            yield from _gauges(report)
        except (KeyError, TypeError, ValueError) as err:
            log.warning("drift gauges left out: the newest report lacks %s", err)


def _gauges(report: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    created = datetime.fromisoformat(report["created_at"]).timestamp()
    yield GaugeMetricFamily(
        "penguin_drift_report_timestamp_seconds", "When the newest drift report was written", created
    )
    yield GaugeMetricFamily(
        "penguin_drift_detected", "1 if the newest drift report flags any feature", float(report["drifted"])
    )
    yield GaugeMetricFamily(
        "penguin_drift_report_predictions",
        "Predictions judged by the newest drift report",
        float(report["n_predictions"]),
    )
    judged = {**report["features"], **({"species": report["species"]} if report.get("species") else {})}
    families = {
        "drifted": GaugeMetricFamily(
            "penguin_drift_feature_drifted", "1 if the feature drifted", labels=["feature"]
        ),
        "p_value": GaugeMetricFamily(
            "penguin_drift_feature_p_value", "p-value of the feature's test", labels=["feature"]
        ),
        "psi": GaugeMetricFamily(
            "penguin_drift_feature_psi", "Population stability index", labels=["feature"]
        ),
        "statistic": GaugeMetricFamily(
            "penguin_drift_feature_statistic", "KS distance or chi-square statistic", labels=["feature"]
        ),
    }
    for feature, result in judged.items():
        for key, family in families.items():
            family.add_metric([feature], float(result[key]))
    yield from families.values()
    if report.get("live"):  # reports of before the feedback loop have none
        yield from _live_gauges(report["live"])


def _live_gauges(live: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    """The report's live accuracy (the labels sent to POST /feedback) per served model version."""
    accuracy = GaugeMetricFamily(
        "penguin_live_accuracy",
        "Accuracy on the labelled predictions of the newest report's window",
        labels=["model_version"],
    )
    labelled = GaugeMetricFamily(
        "penguin_live_labelled",
        "Labelled predictions in the newest report's window",
        labels=["model_version"],
    )
    for version, summary in live["by_version"].items():
        accuracy.add_metric([version], float(summary["accuracy"]))
        labelled.add_metric([version], float(summary["labelled"]))
    yield from (accuracy, labelled)
    yield GaugeMetricFamily(
        "penguin_live_unmatched",
        "Labels of the window whose prediction_id matches no loaded prediction",
        float(live["unmatched"]),
    )
    yield GaugeMetricFamily(
        "penguin_live_below_threshold",
        "1 if the live accuracy is below MIN_LIVE_ACCURACY with at least MIN_LIVE_LABELLED labels",
        float(live["below_threshold"]),
    )
