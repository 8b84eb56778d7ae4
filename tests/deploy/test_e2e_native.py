"""End to end as a user runs it: `scripts/run_stack.py` (what `make run` starts) from an empty state on free
ports, the real scheduler training the first model by itself, a retrain triggered through Airflow's REST API
and served without a restart, then a SIGTERM that must leave no process behind.

Run twice: with the native defaults (SQLite for Airflow metadata and for the data) and with the databases the
compose stack uses (PostgreSQL metadata, MySQL-compatible data store), each in a fresh database.
"""

import contextlib
import json
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import palmerpenguins
import psutil
import pytest
from free_port import free_port
from native import TRAIN_TIMEOUT_S, NativeStack, alive, command, wait_for

from penguins_contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES

# Penguins drawn from the clean table, flippers 20 mm longer (still plausible): the drift the monitor finds.
SHIFTED = 120


def pss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_full_info().pss
    return total / 2**20


def run_end_to_end(stack: NativeStack, tmp_path: Path) -> None:
    stack.start()
    try:
        # 1. From nothing: data_pipeline (@once) and then train_pipeline (Asset) run by themselves.
        first = wait_for("first prediction", stack.trained_prediction, TRAIN_TIMEOUT_S, stack)
        seconds, processes = time.monotonic() - stack.started_at, stack.tree()
        pss = pss_mb(processes)
        print(f"\nfirst prediction after {seconds:.0f} s; PSS {pss:.0f} MB over {len(processes)} processes")
        assert first["species"] in first["probabilities"]
        assert (tmp_path / "artifacts" / "current.json").exists()
        api_pid = stack.api_pid()

        # The API picks the promoted version up while train_pipeline still prunes and warms up.
        def first_training_done() -> bool:
            return [run["state"] for run in stack.dag_runs("train_pipeline")] == ["success"]

        wait_for("train_pipeline success", first_training_done, 120, stack)
        (data_run,) = stack.dag_runs("data_pipeline")
        (train_run,) = stack.dag_runs("train_pipeline")
        assert (data_run["run_type"], data_run["state"]) == ("scheduled", "success")
        assert train_run["run_type"] == "asset_triggered"

        # 2. A new data_pipeline run, triggered through the REST API as the UI does.
        response = stack.airflow.post("/api/v2/dags/data_pipeline/dagRuns", json={"logical_date": None})
        assert response.status_code == 200, response.text
        assert response.json()["run_type"] == "manual"

        def retrained() -> bool:
            stack.assert_no_failed_run()
            runs = stack.dag_runs("train_pipeline")
            return len(runs) == 2 and runs[-1]["state"] == "success"

        wait_for("asset-triggered retrain", retrained, TRAIN_TIMEOUT_S, stack)
        assert stack.dag_runs("data_pipeline")[-1]["state"] == "success"
        assert stack.dag_runs("train_pipeline")[-1]["run_type"] == "asset_triggered"

        # 3. The running API serves the new version: same process, no restart.
        second = wait_for(
            "new model version served",
            lambda: (p := stack.prediction()) and p["model_version"] != first["model_version"] and p,
            60,
            stack,
        )
        assert stack.api_pid() == api_pid
        assert second["species"] == first["species"]

        # 4. The loop back: what the API answers is logged, monitor_pipeline loads it and finds the drift.
        check_monitoring(stack, tmp_path, second["model_version"])

        # 5. SIGTERM stops everything: no process of the tree survives.
        processes = stack.tree()
        assert len(processes) >= 5, [command(p) for p in processes]
    finally:
        stack.stop()
    stack.assert_stopped_clean()
    survivors = [p for p in processes if alive(p)]
    assert survivors == [], [command(p) for p in survivors]
    # The scheduler signed task tokens and the test logged in: with keys long enough for HS512.
    logs = "".join(log.read_text(errors="replace") for log in (tmp_path / "logs").glob("*.log"))
    assert "InsecureKeyLengthWarning" not in logs


def check_monitoring(stack: NativeStack, tmp_path: Path, served: str) -> None:
    """Shifted penguins through /predict/batch, a monitor_pipeline run triggered as the UI does, then the
    report at /monitoring, its JSON and its gauges; a second run loads nothing new."""
    penguins = palmerpenguins.load_penguins().dropna().sample(SHIFTED, random_state=0)
    instances = [
        {**row, "flipper_length_mm": row["flipper_length_mm"] + 20}
        for row in penguins[[*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]].to_dict("records")
    ]
    batch = {"instances": instances}
    answered = stack.api.post("/predict/batch", json=batch, headers={"X-Request-ID": "e2e"})
    assert answered.status_code == 200, answered.text
    assert list((tmp_path / "predictions").glob("predictions-*.jsonl")), "the API wrote no prediction log"

    def monitored() -> dict[str, Any]:
        assert stack.run_dag("monitor_pipeline")["state"] == "success", stack.report()
        drift = stack.api.get("/monitoring/drift.json")
        assert drift.status_code == 200, drift.text
        return drift.json()

    time.sleep(0.5)  # past the log's flush period
    report = monitored()
    # Every answer of the served version counts, the polls that saw it first as well as the shifted batch.
    assert report["model_version"] == served and report["n_predictions"] >= SHIFTED, report
    assert report["features"]["flipper_length_mm"]["drifted"] is True
    assert report["features"]["bill_length_mm"]["drifted"] is False
    page = stack.api.get("/monitoring")
    assert page.status_code == 200 and "flipper_length_mm" in page.text
    metrics = stack.api.get("/metrics").text
    assert 'penguin_drift_feature_drifted{feature="flipper_length_mm"} 1.0' in metrics
    assert monitored()["n_predictions"] == report["n_predictions"], "a second run loaded records again"


@pytest.mark.timeout(1500)
def test_native_stack_on_sqlite_trains_retrains_and_stops_clean(
    native_env: dict[str, str], tmp_path: Path
) -> None:
    stack = NativeStack(native_env, tmp_path)
    run_end_to_end(stack, tmp_path)

    # A second start reuses the state: the API serves the promoted model at once, nothing retrains.
    served = (tmp_path / "artifacts" / "current.json").read_text()
    stack.start()
    try:
        again = wait_for("prediction after a restart", stack.prediction, 60, stack)
        print(f"second start: prediction after {time.monotonic() - stack.started_at:.1f} s")
        assert again["model_version"] in served
        wait_for("the stack up again", lambda: "The stack is up" in stack.output.read_text(), 300, stack)
        stack.login()
        assert len(stack.dag_runs("data_pipeline")) == 2, "data_pipeline (@once) must not run again"

        # A stop while a task runs: it finishes within the supervisor's grace or is killed and retried at the
        # next start; either way it reports through the api-server, never left `running`.
        response = stack.airflow.post("/api/v2/dags/data_pipeline/dagRuns", json={"logical_date": None})
        assert response.status_code == 200, response.text
        run_id = response.json()["dag_run_id"]
        task_id = wait_for("a running task", lambda: stack.running_task("data_pipeline", run_id), 120, stack)
        # Airflow's task runner installs its SIGTERM handler only once the task's code is about to run
        # (airflow/sdk/execution_time/task_runner.py): a stop in the first instant of a task still kills it.
        time.sleep(3)
    finally:
        stack.stop()
    stack.assert_stopped_clean()
    with contextlib.closing(sqlite3.connect(tmp_path / "airflow" / "airflow.db")) as metadata:
        (state,) = metadata.execute(
            "SELECT state FROM task_instance WHERE run_id = ? AND task_id = ?", (run_id, task_id)
        ).fetchone()
    assert state in ("success", "up_for_retry"), f"{task_id} ended {state}\n{stack.report()}"


@pytest.mark.timeout(1500)
def test_native_stack_on_postgres_and_mysql(
    native_env: dict[str, str], tmp_path: Path, postgres_url: str, mariadb_url: str
) -> None:
    env = {**native_env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_url, "PENGUINS_DB_URL": mariadb_url}
    run_end_to_end(NativeStack(env, tmp_path), tmp_path)


def states(tmp_path: Path, dag_id: str) -> tuple[list[str], dict[str, str]]:
    """From the metadata database, after a stop: the DAG's run states, and its newest run's task states."""
    with contextlib.closing(sqlite3.connect(tmp_path / "airflow" / "airflow.db")) as metadata:
        runs = metadata.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id", (dag_id,)
        ).fetchall()
        tasks = metadata.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, runs[-1][0])
        ).fetchall()
    return [state for _, state in runs], dict(tasks)


def ctrl_c(stack: NativeStack, phase: str) -> None:
    """Ctrl-C as a terminal sends it (SIGINT), 2 s into `phase`: the supervisor is gone within 5 s, having
    left no process behind."""
    time.sleep(2)
    processes = stack.tree()
    started = time.monotonic()
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=90) == 0, stack.report()
    took = time.monotonic() - started
    print(f"Ctrl-C {phase}: everything stopped in {took:.1f} s")
    survivors = [p for p in processes if alive(p)]
    assert survivors == [], [command(p) for p in survivors]
    assert took < 5, stack.report()


@pytest.mark.timeout(2400)
def test_ctrl_c_stops_everything_within_5_s_in_every_phase(
    native_env: dict[str, str], tmp_path: Path
) -> None:
    """Issue 19: Ctrl-C during the first training, during train_pipeline's warmup, and on an idle stack. A
    training is killed and retried at the next start; a warmup ends as a success: a promoted model never
    makes a run fail."""
    env = {
        **native_env,
        # A first training long enough to be stopped in the middle (a larger forest, one core).
        "N_ESTIMATORS": "1500",
        "TRAIN_N_JOBS": "1",
        # A warmup that keeps retrying, as it did while the API was stopped under it: the API is not there.
        "API_URL": f"http://127.0.0.1:{free_port()}",
        "WARMUP_ATTEMPTS": "20",
        "WARMUP_BACKOFF_SECONDS": "2",
    }
    stack = NativeStack(env, tmp_path)

    def running_in_train(task_id: str) -> bool:
        """That task of train_pipeline runs its step now (past Airflow's start-up of the task, where a
        SIGTERM kills it before it can report: Airflow 3.3 then leaves it `running` for minutes)."""
        with contextlib.suppress(httpx.TransportError):
            if "Authorization" not in stack.airflow.headers:
                stack.login()
            runs = stack.dag_runs("train_pipeline")
            if runs and stack.running_task("train_pipeline", runs[-1]["dag_run_id"]) == task_id:
                pattern = f"dag_id=train_pipeline/*/task_id={task_id}/*.log"
                logs = sorted(
                    (tmp_path / "airflow" / "logs").glob(pattern), key=lambda log: log.stat().st_mtime
                )
                return bool(logs) and f"Step {task_id} started" in logs[-1].read_text(errors="replace")
        return False

    try:
        # 1. The first training, in its `train` task.
        stack.start()
        wait_for("the first training", lambda: running_in_train("train"), TRAIN_TIMEOUT_S, stack)
        ctrl_c(stack, "during the first training")
        runs, tasks = states(tmp_path, "train_pipeline")
        assert (runs, tasks["train"]) == (["running"], "up_for_retry"), stack.report()

        # 2. The next start retries the training and promotes; Ctrl-C while the warmup retries.
        stack.start()
        wait_for("the warmup", lambda: running_in_train("warmup"), TRAIN_TIMEOUT_S, stack)
        ctrl_c(stack, "during the warmup")
        runs, tasks = states(tmp_path, "train_pipeline")
        assert (tasks["promote"], tasks["warmup"]) == ("success", "success"), stack.report()
        assert "failed" not in runs, stack.report()
        promoted = json.loads((tmp_path / "artifacts" / "current.json").read_text())["version"]

        # 3. An idle stack, serving that model; the run whose warmup was stopped has succeeded.
        stack.start()
        served = wait_for("a prediction", stack.prediction, 120, stack)
        assert served["model_version"] == promoted
        wait_for("the stack up", lambda: "The stack is up" in stack.output.read_text(), 300, stack)
        stack.login()
        wait_for(
            "train_pipeline success",
            lambda: stack.dag_runs("train_pipeline")[-1]["state"] == "success",
            120,
            stack,
        )
        ctrl_c(stack, "on an idle stack")
    finally:
        stack.stop()  # a no-op once Ctrl-C stopped it; else no stack outlives a failure


@pytest.mark.timeout(1500)
def test_the_mlflow_server_answers_at_the_printed_address_and_stops_with_the_rest(
    native_env: dict[str, str], tmp_path: Path
) -> None:
    """`make run` starts the tracking server (before the scheduler, whose tasks record into it) with its
    folder under the state, prints its address, hands it to every component, and stops it with the rest. DAGs
    stay paused: no training is needed to prove it."""
    stack = NativeStack({**native_env, "DAGS_ARE_PAUSED_AT_CREATION": "true"}, tmp_path)
    stack.start()
    try:
        wait_for("the stack up", lambda: "The stack is up" in stack.output.read_text(), 1200, stack)
        printed = re.search(r"^  MLflow UI +(\S+)", stack.output.read_text(), re.M)
        assert printed, stack.report()
        url = printed[1]
        assert url == f"http://127.0.0.1:{stack.env['MLFLOW_PORT']}"
        assert httpx.get(f"{url}/health", timeout=10).text == "OK"
        assert (tmp_path / "mlflow" / "mlflow.db").is_file()
        processes = stack.tree()
        servers = [p for p in processes if "mlflow" in " ".join(command(p)[:2]) and "server" in command(p)]
        assert servers, [command(p) for p in processes]
        scheduler = [p for p in processes if "scheduler" in " ".join(command(p))]
        assert scheduler and scheduler[0].environ()["MLFLOW_TRACKING_URI"] == url
    finally:
        stack.stop()
    stack.assert_stopped_clean()
    survivors = [p for p in processes if alive(p)]
    assert survivors == [], [command(p) for p in survivors]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=5)
