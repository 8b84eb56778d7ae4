"""prometheus/alerts.yml names only metrics the API exports: every name in its rules is found on a real app's
/metrics, scraped with a drift report holding a `live` section in place (so the report's gauges are there
too). promtool checks the rules' syntax and behaviour (`make lint`); this checks that they watch something."""

import re
from pathlib import Path

import pandas as pd
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_monitoring import LIVE, make_report, with_live

ALERTS = Path(__file__).resolve().parents[2] / "prometheus" / "alerts.yml"
# PromQL's words that are not metric names: keywords, and names that stand for a function (followed by "(").
KEYWORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label matchers, ranges,
    grouping clauses, functions and keywords are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # label matchers, ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {name for name in names if name not in KEYWORDS}


def exported(text: str) -> set[str]:
    """Every metric name a /metrics answer holds, samples or not (a labelled counter is listed before its
    first count): the families', counters with their `_total`, and every sample's."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        names.update(sample.name for sample in family.samples)
    return names


def test_metric_names_of_an_expression_are_found() -> None:
    assert metric_names(
        'sum(rate(http_requests_total{status=~"5.."}[5m])) / sum by (route) (rate(up[5m])) > 0.05'
    ) == {"http_requests_total", "up"}
    assert metric_names("absent(penguins_model_info == 1) or max(x_y) < 1") == {"penguins_model_info", "x_y"}


def test_every_metric_in_the_alert_rules_is_exported_by_the_api(
    client: TestClient, artifacts_dir: Path, versions, clean_penguins: pd.DataFrame
) -> None:
    make_report(artifacts_dir, versions.main, clean_penguins, 36, flipper_length_mm=1.5)
    with_live(artifacts_dir, LIVE)
    names = exported(client.get("/metrics").text)
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert len(rules) == 6
    used = {rule["alert"]: metric_names(rule["expr"]) for rule in rules}
    assert all(used.values()), used
    missing = {alert: sorted(found - names) for alert, found in used.items() if found - names}
    assert not missing, f"alerts.yml names metrics the API does not export: {missing}"
    assert {"penguin_live_below_threshold", "penguin_drift_detected"} <= set().union(*used.values())
