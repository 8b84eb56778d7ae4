"""Issue 21 end to end, natively and with no click but the hourly monitor's trigger: a colony the champion
mislabels is served, its true species come back through POST /feedback, monitor_pipeline finds the drift and
the fall in live accuracy and announces `penguins_drift`, the real scheduler starts train_pipeline from that
Asset, the challenger beats the champion on the colony and is promoted, and the next monitoring run shows the
live accuracy recover in /metrics.

The default SQLite stack, MLflow on as `make run` starts it; small forests and 2-fold CV (N_ESTIMATORS,
CV_FOLDS) and MIN_LIVE_LABELLED=10 keep it quick. MIN_LIVE_ACCURACY keeps its default, 0.9.
"""

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest
from live_labels import live_accuracy, serve_and_label
from native import TRAIN_TIMEOUT_S, NativeStack, wait_for

COLONY = 100  # labels; the newest 30 % (30 >= MIN_LIVE_LABELLED) are train_pipeline's live test set
MIN_LIVE_ACCURACY = 0.9  # the default


def monitor(stack: NativeStack) -> tuple[str, dict[str, Any]]:
    """A monitor_pipeline run through the REST API (the one trigger allowed: it is hourly): its id, its
    report."""
    run = stack.run_dag("monitor_pipeline")
    assert run["state"] == "success", stack.report()
    report = stack.api.get("/monitoring/drift.json")
    assert report.status_code == 200, report.text
    return run["dag_run_id"], dict(report.json())


def asset_events(stack: NativeStack, path: str, **params: str) -> list[dict[str, Any]]:
    response = stack.airflow.get(path, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["asset_events"])


@pytest.mark.timeout(2400)
def test_labels_of_a_shifted_colony_retrain_and_promote_a_better_model_by_themselves(
    native_env: dict[str, str], tmp_path: Path, make_shifted_colony: Callable[[int, int], pd.DataFrame]
) -> None:
    env = {**native_env, "MIN_LIVE_LABELLED": "10", "N_ESTIMATORS": "40", "CV_FOLDS": "2"}
    stack = NativeStack(env, tmp_path)
    artifacts = tmp_path / "artifacts"
    started = time.monotonic()
    stack.start()
    try:
        # 1. The first model, as the stack trains it by itself.
        first = wait_for("first prediction", stack.trained_prediction, TRAIN_TIMEOUT_S, stack)
        champion = first["model_version"]
        wait_for(
            "train_pipeline success",
            lambda: [r["state"] for r in stack.dag_runs("train_pipeline")] == ["success"],
            120,
            stack,
        )

        # 2. The shifted colony: the champion mislabels it; its true species come back as feedback.
        served, champion_accuracy = serve_and_label(stack.api, make_shifted_colony(COLONY, 7))
        assert served == champion and champion_accuracy < MIN_LIVE_ACCURACY

        # 3. The monitor finds the drift and the fall in live accuracy, and announces penguins_drift.
        monitored, report = monitor(stack)
        live = report["live"]
        assert report["drifted"] is True and "flipper_length_mm" in report["drifted_features"], report
        assert live["below_threshold"] is True and live["labelled"] == COLONY, live
        assert live["by_version"][champion]["accuracy"] == pytest.approx(champion_accuracy)
        old_gauge = live_accuracy(stack.api, champion)
        assert old_gauge == pytest.approx(champion_accuracy)

        # 4. By itself: the scheduler starts train_pipeline from the Asset; the challenger is promoted.
        def retrained() -> dict[str, Any] | None:
            runs = stack.dag_runs("train_pipeline")
            assert "failed" not in [r["state"] for r in runs], stack.report()
            return runs[1] if len(runs) > 1 and runs[1]["state"] == "success" else None

        retrain = wait_for("train_pipeline from penguins_drift", retrained, TRAIN_TIMEOUT_S, stack)
        assert retrain["run_type"] == "asset_triggered", retrain
        # Asked once the run it created has started: Airflow 3.3 answers 500 while that run is queued
        # (AssetEventResponse wants the created run's start_date).
        (event,) = asset_events(
            stack, "/api/v2/assets/events", source_dag_id="monitor_pipeline", source_run_id=monitored
        )
        assert (event["name"], event["source_task_id"]) == ("penguins_drift", "announce"), event
        assert event["extra"]["reasons"] == ["drift", "live_accuracy"], event
        run_path = f"/api/v2/dags/train_pipeline/dagRuns/{quote(retrain['dag_run_id'], safe='')}"
        upstream = asset_events(stack, f"{run_path}/upstreamAssetEvents")
        assert monitored in [e["source_run_id"] for e in upstream], upstream
        decision = json.loads((artifacts / "retraining" / "latest.json").read_text())
        assert decision["promoted"] is True and decision["champion"] == champion, decision
        assert decision["live"]["candidate"] > decision["live"]["champion"], decision
        challenger = json.loads((artifacts / "current.json").read_text())["version"]
        assert challenger == decision["candidate"] != champion

        # 5. The API serves it, better on fresh penguins of the colony; the next report shows the recovery.
        wait_for(
            "the new version served",
            lambda: (p := stack.prediction()) and p["model_version"] == challenger,
            120,
            stack,
        )
        served, challenger_accuracy = serve_and_label(stack.api, make_shifted_colony(COLONY, 8))
        assert served == challenger and challenger_accuracy > champion_accuracy
        _, report = monitor(stack)
        assert report["live"]["by_version"][challenger]["labelled"] == COLONY, report["live"]
        recovered = live_accuracy(stack.api, challenger)
        print(
            f"\nlive accuracy on the colony: {champion} {old_gauge:.2f} -> {challenger} {recovered:.2f} "
            f"after {time.monotonic() - started:.0f} s"
        )
        assert recovered > old_gauge
    finally:
        stack.stop()
    stack.assert_stopped_clean()
