"""monitor_pipeline through Airflow (`airflow dags test`), from log files to a published report, on SQLite and
on MariaDB; the `penguins_drift` Asset event is emitted only by a run that found drift or a live accuracy
below the threshold."""

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import sqlalchemy as sa
from prediction_logs import feedback, records, shifted, write_log

import penguins_contract as contract
from penguins_contract import FEEDBACK_FILE_PREFIX
from penguins_pipeline.core.schema import DRIFT_ASSET_NAME

if TYPE_CHECKING:
    from conftest import RunDag  # the fixture's type (tests/conftest.py)


def drift_events(airflow_home: Path) -> list[tuple[str, str]]:
    """(source run id, extra) of every `penguins_drift` event in Airflow's metadata."""
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        return db.execute(
            "SELECT e.source_run_id, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name = ? ORDER BY e.id",
            (DRIFT_ASSET_NAME,),
        ).fetchall()


def latest_run(airflow_home: Path) -> tuple[str, str]:
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        return db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = 'monitor_pipeline' ORDER BY id DESC LIMIT 1"
        ).fetchone()


def pipeline_env(tmp_path: Path, versions, db_url: str) -> tuple[Path, Path, dict[str, str]]:
    """A copy of the trained versions, a log folder, and the DAG's environment pointing at them."""
    artifacts_dir, predictions = tmp_path / "artifacts", tmp_path / "predictions"
    shutil.copytree(versions.folder, artifacts_dir)
    env = {
        "PENGUINS_DB_URL": db_url,
        "ARTIFACTS_DIR": str(artifacts_dir),
        "PREDICTIONS_DIR": str(predictions),
    }
    return artifacts_dir, predictions, env


def test_drift_is_reported_and_announced_then_a_stable_window_is_not(
    run_dag: "RunDag",
    task_states,
    airflow_home: Path,
    db_url: str,
    versions,
    clean_penguins: pd.DataFrame,
    tmp_path: Path,
) -> None:
    artifacts_dir, predictions, env = pipeline_env(tmp_path, versions, db_url)
    now = datetime.now(UTC)
    earlier = now - timedelta(hours=2)
    moved = records(shifted(clean_penguins, 100, 21, bill_length_mm=-1.5), versions.main, end=earlier)
    write_log(predictions, moved[:60], now, 1)
    write_log(predictions, moved[60:], now, 2, tail=b'{"request_id": "half a li')

    done = run_dag("monitor_pipeline", **env)
    assert done.returncode == 0, done.stdout[-5000:]
    assert {task: state for task, (state, _) in task_states("monitor_pipeline").items()} == {
        "load": "success",
        "check_drift": "success",
        "announce": "success",
    }
    drifted_run, state = latest_run(airflow_home)
    assert state == "success"
    report = json.loads((contract.latest_report(artifacts_dir) / contract.REPORT_JSON).read_text())
    assert (report["run_id"], report["n_predictions"]) == (drifted_run, 100)
    assert report["drifted_features"] == ["bill_length_mm"]
    events = [(run, json.loads(extra)) for run, extra in drift_events(airflow_home) if run == drifted_run]
    assert len(events) == 1 and events[0][1]["drifted_features"] == ["bill_length_mm"]

    # The next run loads only the new file; its window (the last hour) is stable: no event.
    stable = records(shifted(clean_penguins, 400, 22), versions.main, end=datetime.now(UTC))
    write_log(predictions, stable, datetime.now(UTC), 3)
    done = run_dag("monitor_pipeline", **env, DRIFT_WINDOW_HOURS="1")
    assert done.returncode == 0, done.stdout[-5000:]
    assert task_states("monitor_pipeline")["announce"][0] == "skipped"
    stable_run, state = latest_run(airflow_home)
    assert state == "success" and stable_run != drifted_run
    report = json.loads((contract.latest_report(artifacts_dir) / contract.REPORT_JSON).read_text())
    assert (report["run_id"], report["drifted"], report["n_predictions"]) == (stable_run, False, 400)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM penguins_predictions")).scalar() == 500
    engine.dispose()
    assert [run for run, _ in drift_events(airflow_home) if run == stable_run] == []


def test_no_predictions_yet_gives_a_not_enough_data_report(
    run_dag: "RunDag", task_states, tmp_path: Path
) -> None:
    done = run_dag("monitor_pipeline", PREDICTIONS_DIR=str(tmp_path / "nothing-here"))
    assert done.returncode == 0, done.stdout[-5000:]
    assert task_states("monitor_pipeline")["announce"][0] == "skipped"
    report = json.loads((contract.latest_report(tmp_path / "artifacts") / contract.REPORT_JSON).read_text())
    assert (report["status"], report["n_predictions"], report["drifted"]) == ("not_enough_data", 0, False)


def test_live_accuracy_below_the_threshold_is_announced_accurate_enough_is_not(
    run_dag: "RunDag",
    task_states,
    airflow_home: Path,
    db_url: str,
    versions,
    clean_penguins: pd.DataFrame,
    tmp_path: Path,
) -> None:
    """No drift (too few predictions to judge it), but labels come back: 12 of 20 right is below 0.9."""
    artifacts_dir, predictions, env = pipeline_env(tmp_path, versions, db_url)
    env["MIN_LIVE_LABELLED"] = "20"
    now = datetime.now(UTC)
    answered = records(clean_penguins.head(30), versions.main, end=now - timedelta(minutes=5))
    write_log(predictions, answered, now, 1)
    told = [row["species"] for row in answered[:12]] + [
        "Chinstrap" if row["species"] != "Chinstrap" else "Gentoo" for row in answered[12:20]
    ]
    write_log(predictions, feedback(answered[:20], told, at=now), now, 2, prefix=FEEDBACK_FILE_PREFIX)
    decision = {
        "time": now.isoformat(),
        "candidate": "v2",
        "champion": "v1",
        "promoted": False,
        "reason": "not better on the live penguins",
    }
    (artifacts_dir / "retraining").mkdir()
    (artifacts_dir / "retraining" / "latest.json").write_text(json.dumps(decision))

    done = run_dag("monitor_pipeline", **env)
    assert done.returncode == 0, done.stdout[-5000:]
    assert task_states("monitor_pipeline")["announce"][0] == "success"
    below_run, _ = latest_run(airflow_home)
    report = json.loads((contract.latest_report(artifacts_dir) / contract.REPORT_JSON).read_text())
    assert (report["status"], report["drifted"]) == ("not_enough_data", False)
    assert report["live"]["labelled"] == 20 and report["live"]["accuracy"] == pytest.approx(12 / 20)
    assert report["live"]["below_threshold"] is True
    assert report["retraining"] == decision
    events = [json.loads(extra) for run, extra in drift_events(airflow_home) if run == below_run]
    assert len(events) == 1
    assert events[0]["reasons"] == ["live_accuracy"]
    assert events[0]["live"]["accuracy"] == pytest.approx(0.6)
    page = (contract.latest_report(artifacts_dir) / contract.REPORT_HTML).read_text()
    assert "<h2>Live accuracy</h2>" in page and "BELOW THE THRESHOLD" in page
    assert "not better on the live penguins" in page
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        labelled = conn.execute(sa.text("SELECT prediction_id, species FROM penguins_labelled")).all()
    engine.dispose()
    assert sorted(labelled) == sorted(
        (row["prediction_id"], true) for row, true in zip(answered[:20], told, strict=True)
    )

    # The same labels judged against a lower bar: accurate enough, no event.
    done = run_dag("monitor_pipeline", **env, MIN_LIVE_ACCURACY="0.5")
    assert done.returncode == 0, done.stdout[-5000:]
    assert task_states("monitor_pipeline")["announce"][0] == "skipped"
    enough_run, _ = latest_run(airflow_home)
    assert enough_run != below_run
    assert [run for run, _ in drift_events(airflow_home) if run == enough_run] == []
