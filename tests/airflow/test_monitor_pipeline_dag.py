"""monitor_pipeline through Airflow (`airflow dags test`), from log files to a published report, on SQLite and
on MariaDB; the `penguins_drift` Asset event is emitted only by a run that found drift."""

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa
from prediction_logs import records, shifted, write_log

import penguins_contract as contract
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


def test_drift_is_reported_and_announced_then_a_stable_window_is_not(
    run_dag: "RunDag",
    task_states,
    airflow_home: Path,
    db_url: str,
    versions,
    clean_penguins: pd.DataFrame,
    tmp_path: Path,
) -> None:
    artifacts_dir, predictions = tmp_path / "artifacts", tmp_path / "predictions"
    shutil.copytree(versions.folder, artifacts_dir)
    env = {
        "PENGUINS_DB_URL": db_url,
        "ARTIFACTS_DIR": str(artifacts_dir),
        "PREDICTIONS_DIR": str(predictions),
    }
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
