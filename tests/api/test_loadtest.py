"""`make loadtest` for real (run by tests/conftest.py): Locust's users (bench/locustfile.py) against a real
API, a few seconds each. A served model answers every kind of request well and the run exits 0 with its
reports written; an API with no model answers 503, and the run exits non-zero."""

import csv
import json
from pathlib import Path
from typing import Any

KINDS = {
    "GET /",
    "GET /model",
    "GET /model/training-points",
    "POST /predict",
    "POST /predict/batch",
    "POST /v2/models/penguins/infer",
}


def stats(results: Path) -> dict[str, dict[str, Any]]:
    """Locust's own CSV, request kind -> row (`Aggregated` for the total)."""
    with (results / "loadtest_stats.csv").open(newline="") as rows:
        return {f"{row['Type']} {row['Name']}".strip(): row for row in csv.DictReader(rows)}


def test_make_loadtest_against_a_served_model_exits_0_with_every_request_kind_answered(
    server: str, tmp_path: Path, loadtest
) -> None:
    """Thirty users, each a few tasks in a run: every kind of request is drawn (one kind missing from all of
    them is a chance under one in ten thousand)."""
    done = loadtest(server, tmp_path, users=30, seconds=6)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    rows = stats(tmp_path)
    assert set(rows) >= KINDS, sorted(rows)
    for kind in KINDS:
        assert int(rows[kind]["Request Count"]) > 0, kind
        assert int(rows[kind]["Failure Count"]) == 0, kind
    assert (tmp_path / "loadtest.html").read_text().lstrip().lower().startswith("<!doctype html")
    summary = json.loads((tmp_path / "loadtest_summary.json").read_text())
    assert summary["host"] == server and summary["users"] == 30
    assert summary["total"]["failures"] == 0
    # Locust rewrites its CSV every second; the summary is taken once every user has stopped.
    assert summary["total"]["requests"] >= int(rows["Aggregated"]["Request Count"])
    assert set(summary["requests"]) == KINDS
    assert summary["total"]["p95_ms"] > 0 and summary["commit"]


def test_make_loadtest_fails_when_requests_fail(api_server, tmp_path: Path, loadtest) -> None:
    """No model: the page itself loads, but /model and every prediction answer 503."""
    with api_server(tmp_path / "nothing-trained") as url:
        done = loadtest(url, tmp_path / "results", users=20, seconds=5)
    assert done.returncode != 0, done.stdout + done.stderr
    rows = stats(tmp_path / "results")
    assert int(rows["Aggregated"]["Failure Count"]) > 0
    assert int(rows["POST /predict"]["Failure Count"]) == int(rows["POST /predict"]["Request Count"]) > 0
    assert int(rows["GET /"]["Failure Count"]) == 0
    summary = json.loads((tmp_path / "results" / "loadtest_summary.json").read_text())
    assert "HTTP 503" in summary["failures"]["POST /predict"]["error"]
