"""Issue 21 end to end, natively and with no click but the hourly monitor's trigger, two cases on one stack
(a native stack costs minutes to start; the second case needs only a served champion, so it also runs alone):

1. Retraining helps: a colony the champion mislabels is served, its true species come back through
   POST /feedback, monitor_pipeline finds the drift and the fall in live accuracy and announces
   `penguins_drift`, the real scheduler starts train_pipeline from that Asset, the challenger beats the
   champion on the colony and is promoted, and the next monitoring run shows the live accuracy recover in
   /metrics.
2. Retraining cannot help: penguins each answered three times and labelled once as each species (labels that
   contradict one another, as noise does). Every model gives one answer per penguin, so it is right on exactly
   a third of them: live accuracy falls and train_pipeline runs from the Asset again, but no challenger can be
   better on those live test rows; it is rejected, the champion stays served, the run succeeds, and the
   rejection is recorded (retraining/latest.json, the task log, the MLflow run, the next report).

The default SQLite stack, MLflow on as `make run` starts it; small forests and 2-fold CV (N_ESTIMATORS,
CV_FOLDS) and MIN_LIVE_LABELLED=10 keep it quick. MIN_LIVE_ACCURACY keeps its default, 0.9.
"""

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mlflow
import pandas as pd
import pytest
from live_labels import label, live_accuracy, serve, serve_and_label
from native import TRAIN_TIMEOUT_S, NativeStack, native_environment, wait_for

from penguins_contract import registry
from penguins_pipeline.core.schema import LABELLED_AT
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.core.store import read_labelled
from penguins_pipeline.training.tracking import DECISION_REASON_TAG, DECISION_TAG
from penguins_pipeline.training.train import split_live

COLONY = 100  # labels; the newest 30 % (30 >= MIN_LIVE_LABELLED) are train_pipeline's live test set
MIN_LIVE_ACCURACY = 0.9  # the default
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
TRIPLETS = 30  # penguins of the second case, each answered and labelled three times


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


def training_started_by(stack: NativeStack, monitored: str) -> dict[str, Any] | None:
    """The train_pipeline run that the penguins_drift of monitor run `monitored` started, once it ended; a
    failed training fails at once. Only ended runs are asked for their upstream events: Airflow 3.3 answers
    500 while the run an event created is queued (AssetEventResponse wants its start_date)."""
    for run in stack.dag_runs("train_pipeline"):
        assert run["state"] != "failed", stack.report()
        if run["run_type"] == "asset_triggered" and run["state"] == "success":
            path = f"/api/v2/dags/train_pipeline/dagRuns/{quote(run['dag_run_id'], safe='')}"
            if monitored in [e["source_run_id"] for e in asset_events(stack, f"{path}/upstreamAssetEvents")]:
                return run
    return None


def announced_event(stack: NativeStack, monitored: str) -> dict[str, Any]:
    """The one asset event monitor run `monitored` emitted (asked once the run it created has started)."""
    (event,) = asset_events(
        stack, "/api/v2/assets/events", source_dag_id="monitor_pipeline", source_run_id=monitored
    )
    assert (event["name"], event["source_task_id"]) == ("penguins_drift", "announce"), event
    return event


def current_version(artifacts: Path) -> str:
    return str(json.loads((artifacts / "current.json").read_text())["version"])


def wait_served(stack: NativeStack, version: str) -> None:
    wait_for(
        f"version {version} served",
        lambda: (p := stack.prediction()) and p["model_version"] == version,
        120,
        stack,
    )


def live_test_rows(total: int) -> int:
    """How many of `total` labelled rows train_pipeline keeps as its live test set (its own split_live)."""
    ordered = pd.DataFrame({LABELLED_AT: range(total), "feedback_id": range(total)})
    return len(split_live(ordered, PipelineSettings().live_test_fraction)[1])


def right_labels_needed(labelled: int) -> int:
    """How many rightly labelled penguins to send after `labelled` labels and before the triplets, so that the
    live test set (the newest LIVE_TEST_FRACTION of every labelled row) is exactly the triplets' rows."""
    rows = 3 * TRIPLETS
    padding = 0
    while live_test_rows(labelled + padding + rows) < rows:
        padding += 1
    assert live_test_rows(labelled + padding + rows) == rows, f"{labelled} labels already: raise TRIPLETS"
    return padding


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """One native stack for both cases, its first model trained by itself; stopped clean at the end."""
    folder = tmp_path_factory.mktemp("feedback-loop")
    env = {**native_environment(folder), "MIN_LIVE_LABELLED": "10", "N_ESTIMATORS": "40", "CV_FOLDS": "2"}
    started = NativeStack(env, folder)
    started.start()
    try:
        wait_for("first prediction", started.trained_prediction, TRAIN_TIMEOUT_S, started)
        wait_for(
            "train_pipeline success",
            lambda: [r["state"] for r in started.dag_runs("train_pipeline")] == ["success"],
            120,
            started,
        )
        yield started
    finally:
        started.stop()
    started.assert_stopped_clean()


@pytest.mark.timeout(2400)
def test_labels_of_a_shifted_colony_retrain_and_promote_a_better_model_by_themselves(
    stack: NativeStack, make_shifted_colony: Callable[[int, int], pd.DataFrame]
) -> None:
    artifacts = Path(stack.env["ARTIFACTS_DIR"])
    started = time.monotonic()
    # 1. The first model, as the stack trained it by itself (the module's stack, fresh for this first case).
    champion = current_version(artifacts)

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
    retrain = wait_for(
        "train_pipeline from penguins_drift",
        lambda: training_started_by(stack, monitored),
        TRAIN_TIMEOUT_S,
        stack,
    )
    assert announced_event(stack, monitored)["extra"]["reasons"] == ["drift", "live_accuracy"]
    decision = json.loads((artifacts / "retraining" / "latest.json").read_text())
    assert decision["dag_run_id"] == retrain["dag_run_id"], decision
    assert decision["promoted"] is True and decision["champion"] == champion, decision
    assert decision["live"]["candidate"] > decision["live"]["champion"], decision
    challenger = current_version(artifacts)
    assert challenger == decision["candidate"] != champion

    # 5. The API serves it, better on fresh penguins of the colony; the next report shows the recovery.
    wait_served(stack, challenger)
    served, challenger_accuracy = serve_and_label(stack.api, make_shifted_colony(COLONY, 8))
    assert served == challenger and challenger_accuracy > champion_accuracy
    last, report = monitor(stack)
    assert report["live"]["by_version"][challenger]["labelled"] == COLONY, report["live"]
    recovered = live_accuracy(stack.api, challenger)
    print(
        f"\nlive accuracy on the colony: {champion} {old_gauge:.2f} -> {challenger} {recovered:.2f} "
        f"after {time.monotonic() - started:.0f} s"
    )
    assert recovered > old_gauge

    # The colony is still in the window, so that report announced penguins_drift again: let the training it
    # started end, so that the next case starts on a quiet stack with a settled champion.
    if report["drifted"] or report["live"]["below_threshold"]:
        wait_for("the last training", lambda: training_started_by(stack, last), TRAIN_TIMEOUT_S, stack)


@pytest.mark.timeout(2400)
def test_labels_no_model_can_learn_keep_the_champion_and_record_the_rejected_challenger(
    stack: NativeStack, clean_penguins: pd.DataFrame
) -> None:
    artifacts = Path(stack.env["ARTIFACTS_DIR"])
    started = time.monotonic()
    # 1. The champion as it stands (the first case, when it ran, may have promoted one), served.
    champion = current_version(artifacts)
    wait_served(stack, champion)
    penguins = clean_penguins.sample(frac=1, random_state=21).reset_index(drop=True)

    # 2. Right labels first (every label so far went through a monitor run, so penguins_labelled has them
    # all): just enough for the live test set to be exactly the triplets' rows, which come last.
    padding = penguins.head(right_labels_needed(len(read_labelled(stack.env["PENGUINS_DB_URL"]))))
    if len(padding):
        label(stack.api, serve(stack.api, padding)["predictions"], padding["species"].tolist())
    # Each penguin answered three times, then told to be each species once: one request per triplet, so a
    # triplet shares one labelled_at and the live test set holds whole triplets.
    triplets = penguins.iloc[len(padding) : len(padding) + TRIPLETS].loc[lambda t: t.index.repeat(3)]
    answered = serve(stack.api, triplets)
    assert answered["model_version"] == champion
    for start in range(0, len(triplets), 3):
        triplet = answered["predictions"][start : start + 3]
        assert len({p["species"] for p in triplet}) == 1, triplet  # one answer per penguin: right once
        label(stack.api, triplet, list(SPECIES))
    time.sleep(0.5)  # past the logs' flush period

    # 3. The monitor sees live accuracy fall below MIN_LIVE_ACCURACY and announces penguins_drift.
    monitored, report = monitor(stack)
    live = report["live"]
    assert live["below_threshold"] is True, live
    assert live["by_version"][champion]["accuracy"] < MIN_LIVE_ACCURACY, live

    # 4. By itself: train_pipeline from the Asset. Its live test rows are the triplets, where every model is
    # right on exactly a third: the challenger is not better, so it is rejected and the run succeeds.
    retrain = wait_for(
        "train_pipeline from penguins_drift",
        lambda: training_started_by(stack, monitored),
        TRAIN_TIMEOUT_S,
        stack,
    )
    assert "live_accuracy" in announced_event(stack, monitored)["extra"]["reasons"]
    decision = json.loads((artifacts / "retraining" / "latest.json").read_text())
    candidate = decision["candidate"]
    assert decision["dag_run_id"] == retrain["dag_run_id"], decision
    assert decision["promoted"] is False and decision["champion"] == champion != candidate, decision
    third = pytest.approx(1 / 3)
    assert decision["live"] == {"rows": 3 * TRIPLETS, "candidate": third, "champion": third}, decision
    assert None not in decision["heldout"].values(), decision
    assert decision["reason"].startswith(f"challenger rejected, champion {champion} kept"), decision
    tasks = stack.task_states("train_pipeline", retrain["dag_run_id"])
    assert tasks["quality_gate"] == "success", tasks
    assert {tasks[task] for task in ("verify", "register", "promote")} == {"skipped"}, tasks
    log = stack.task_log("train_pipeline", retrain["dag_run_id"], "quality_gate")
    assert f"Decision keep the champion: {decision['reason']}" in log, log
    mlflow_client = mlflow.MlflowClient(tracking_uri=f"http://127.0.0.1:{stack.env['MLFLOW_PORT']}")
    experiment = mlflow_client.get_experiment_by_name(registry.EXPERIMENT)
    assert experiment is not None
    (run,) = mlflow_client.search_runs(
        [experiment.experiment_id],
        f"tags.{registry.TAG_VERSION} = '{candidate}' and attributes.status = 'FINISHED'",
    )
    assert run.data.tags[DECISION_TAG] == "rejected", run.data.tags
    assert run.data.tags[DECISION_REASON_TAG] == decision["reason"], run.data.tags
    recorded = run.data.metrics
    assert recorded["challenger_live_accuracy"] == recorded["champion_live_accuracy"] == third, recorded
    assert recorded["live_test_rows"] == 3 * TRIPLETS, recorded
    assert recorded["challenger_heldout_accuracy"] == pytest.approx(decision["heldout"]["candidate"])
    assert recorded["champion_heldout_accuracy"] == pytest.approx(decision["heldout"]["champion"])

    # 5. The champion is still what is promoted and served; the challenger's files are gone.
    assert current_version(artifacts) == champion
    assert [p.name for p in (artifacts / "models").iterdir() if candidate in p.name] == []
    assert (stack.prediction() or {}).get("model_version") == champion

    # 6. The next report carries the rejection, in its JSON and on its page.
    _, report = monitor(stack)
    assert report["retraining"] == decision, report["retraining"]
    page = stack.api.get("/monitoring").text
    assert f"challenger {candidate} against champion {champion}, not promoted" in page
    print(
        f"\nlabels no model can learn: champion {champion} kept, challenger {candidate} rejected "
        f"({decision['live']['candidate']:.2f} = {decision['live']['champion']:.2f} on "
        f"{decision['live']['rows']} live test rows) after {time.monotonic() - started:.0f} s"
    )
