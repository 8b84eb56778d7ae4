"""train_pipeline through Airflow (`airflow dags test`) recording into a real MLflow server: the run, its
metrics and artifacts and the registered version read back over MLflow's REST API; the `champion` loaded by
MLflow answers as the API does; rollbacks move the alias with `current.json`; a stopped server moves
nothing."""

import hashlib
import os
import runpy
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
from free_port import free_port

import penguins_contract as contract
from penguins_contract import registry
from penguins_pipeline.core.schema import FEATURES
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts, tracking
from penguins_pipeline.training.train import train_and_write

if TYPE_CHECKING:
    from conftest import (  # fixtures' types (tests/conftest.py, tests/airflow/conftest.py)
        MlflowRest,
        MlflowServer,
        RunDag,
    )

REPO = Path(__file__).resolve().parents[2]
# The API tests' way of running the real API (`python -m app` on a free port), reused as it is.
running_api = runpy.run_path(str(REPO / "tests" / "api" / "conftest.py"))["running_api"]


def test_a_run_is_recorded_registered_and_its_champion_answers_as_the_api(
    run_dag: "RunDag",
    task_states: Callable,
    mlflow_server: "MlflowServer",
    mlflow_rest: "type[MlflowRest]",
    clean_penguins: pd.DataFrame,
    tmp_path: Path,
) -> None:
    rest = mlflow_rest(mlflow_server.url)
    root = tmp_path / "artifacts"
    env = {"ARTIFACTS_DIR": str(root), "MLFLOW_TRACKING_URI": mlflow_server.url}
    data = run_dag("data_pipeline", **env)
    assert data.returncode == 0, data.stdout[-5000:]
    trained = run_dag("train_pipeline", **env)
    assert trained.returncode == 0, trained.stdout[-5000:]
    states = task_states("train_pipeline")
    assert states["record"] == states["register"] == states["promote"] == ("success", 1)

    version = artifacts.read_current(root)
    manifest = artifacts.read_manifest(artifacts.version_dir(root, version))
    [run] = rest.runs(f"tags.{registry.TAG_VERSION} = '{version}'")
    assert run["info"]["status"] == "FINISHED"
    params, metrics, tags = (rest.keyed(run["data"][key]) for key in ("params", "metrics", "tags"))
    forest = manifest["params"]["model"]
    assert {key: params[key] for key in forest} == {key: str(value) for key, value in forest.items()}
    assert params["data_fingerprint"] == manifest["data"]["fingerprint"]
    assert [int(params[f"rows_{n}"]) for n in ("total", "train", "test")] == [
        manifest["data"][f"rows_{n}"] for n in ("total", "train", "test")
    ]
    held_out = manifest["metrics"]
    assert metrics["accuracy"] == held_out["accuracy"] and metrics["f1_macro"] == held_out["f1_macro"]
    for species in manifest["classes"]:
        assert metrics[f"f1_{species}"] == held_out["per_class"][species]["f1"]
    cv = held_out["cv"]
    assert [
        metrics[f"cv_{k}"] for k in ("accuracy_mean", "accuracy_std", "f1_macro_mean", "f1_macro_std")
    ] == [cv[k] for k in ("accuracy_mean", "accuracy_std", "f1_macro_mean", "f1_macro_std")]
    assert tags[registry.TAG_VERSION] == version
    assert tags["airflow_dag_id"] == "train_pipeline" and tags["airflow_try_number"] == "1"
    assert tags["airflow_run_id"] in trained.stdout

    # The artifacts, listed and downloaded through the server's proxy: the very files of the version.
    run_id, experiment_id = run["info"]["run_id"], run["info"]["experiment_id"]
    listed = rest.get("artifacts/list", run_id=run_id, path=registry.RUN_SERVING_DIR)["files"]
    assert sorted(Path(f["path"]).name for f in listed) == [contract.MANIFEST_FILE, contract.SERVING_FILE]
    assert tracking.CONFUSION_MATRIX_FILE in [
        f["path"] for f in rest.get("artifacts/list", run_id=run_id)["files"]
    ]
    proxy = f"{mlflow_server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts"
    serving = httpx.get(f"{proxy}/{registry.RUN_SERVING_DIR}/{contract.SERVING_FILE}", timeout=60)
    assert hashlib.sha256(serving.content).hexdigest() == manifest["files"][contract.SERVING_FILE]["sha256"]
    png = httpx.get(f"{proxy}/{tracking.CONFUSION_MATRIX_FILE}", timeout=60).content
    assert png.startswith(b"\x89PNG")

    # Registered once, tagged, the champion and the challenger.
    champion = rest.aliased(registry.CHAMPION)
    assert champion is not None and champion["run_id"] == run_id
    assert rest.keyed(champion["tags"]) == {
        registry.TAG_VERSION: version,
        registry.TAG_SERVING_SHA256: manifest["files"][contract.SERVING_FILE]["sha256"],
    }
    assert rest.aliased(registry.CHALLENGER) == champion

    # MLflow's own loader of the champion and the API on the same artifacts: the same probabilities.
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    table = clean_penguins[FEATURES].astype({"island": object, "sex": object})
    pyfunc = mlflow.pyfunc.load_model(f"models:/{registry.REGISTERED_MODEL}@{registry.CHAMPION}")
    from_mlflow = np.asarray(pyfunc.predict(table))
    with running_api(root) as url:
        answer = httpx.post(
            f"{url}/predict/batch", json={"instances": table.to_dict(orient="records")}, timeout=120
        )
    assert answer.status_code == 200, answer.text
    from_api = np.array(
        [[p["probabilities"][s] for s in manifest["classes"]] for p in answer.json()["predictions"]]
    )
    assert from_mlflow.shape == (len(clean_penguins), len(manifest["classes"]))
    np.testing.assert_allclose(from_mlflow, from_api, rtol=0, atol=1e-12)


def test_make_pipeline_records_into_the_embedded_server_it_starts_and_the_run_is_there_afterwards(
    airflow_environment: Callable[..., dict[str, str]],
    mlflow_at: Callable[..., Any],
    mlflow_rest: "type[MlflowRest]",
    tmp_path: Path,
) -> None:
    """What a user runs: nothing answers at MLFLOW_TRACKING_URI, so `make pipeline` starts the embedded server
    (STACK_MLFLOW_DIR) for its duration; the server the stack starts later on that folder holds the run."""
    port = free_port()
    root, stored = tmp_path / "artifacts", tmp_path / "mlflow"
    env = airflow_environment(
        PENGUINS_DB_URL=f"sqlite:///{tmp_path / 'penguins.db'}",
        ARTIFACTS_DIR=str(root),
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}",
        STACK_MLFLOW_DIR=str(stored),
    )
    done = subprocess.run(
        ["make", "-C", str(REPO), "pipeline"], env=env, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert f"starting the embedded one ({stored})" in done.stdout
    assert (stored / "mlflow.db").is_file()

    version = artifacts.read_current(root)
    manifest = artifacts.read_manifest(artifacts.version_dir(root, version))
    with mlflow_at(stored, port) as url:
        rest = mlflow_rest(url)
        [run] = rest.runs(f"tags.{registry.TAG_VERSION} = '{version}'")
        assert run["info"]["status"] == "FINISHED"
        assert rest.keyed(run["data"]["metrics"])["accuracy"] == manifest["metrics"]["accuracy"]
        listed = rest.get("artifacts/list", run_id=run["info"]["run_id"], path=registry.RUN_SERVING_DIR)
        assert sorted(Path(f["path"]).name for f in listed["files"]) == [
            contract.MANIFEST_FILE,
            contract.SERVING_FILE,
        ]
        [registered] = rest.registered(version)
        assert rest.aliased(registry.CHAMPION)["version"] == registered["version"]


def test_rollbacks_move_the_champion_alias_with_current_json(
    run_dag: "RunDag",
    mlflow_server: "MlflowServer",
    mlflow_rest: "type[MlflowRest]",
    clean_penguins: pd.DataFrame,
    tmp_path: Path,
) -> None:
    rest = mlflow_rest(mlflow_server.url)

    def champion() -> str:
        return rest.keyed(rest.aliased(registry.CHAMPION)["tags"])[registry.TAG_VERSION]

    root = tmp_path / "artifacts"
    quick = PipelineSettings(artifacts_dir=root, n_estimators=10, cv_folds=2, mlflow_tracking_uri="")
    older = train_and_write(clean_penguins, root, quick)  # trained with tracking off: never registered
    newer = train_and_write(clean_penguins, root, quick)
    artifacts.promote(root, newer)
    env = {**os.environ, "ARTIFACTS_DIR": str(root), "MLFLOW_TRACKING_URI": mlflow_server.url}

    done = subprocess.run(
        ["make", "-C", str(REPO), "rollback", f"VERSION={older}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert artifacts.read_current(root) == older
    assert champion() == older  # recorded and registered on the way

    rolled = run_dag(
        "train_pipeline",
        conf={"rollback_to": newer},
        ARTIFACTS_DIR=str(root),
        MLFLOW_TRACKING_URI=mlflow_server.url,
    )
    assert rolled.returncode == 0, rolled.stdout[-5000:]
    assert artifacts.read_current(root) == newer
    assert champion() == newer
    assert [len(rest.registered(v)) for v in (older, newer)] == [1, 1]


def test_a_stopped_tracking_server_fails_the_run_before_anything_is_served(
    run_dag: "RunDag", task_states: Callable, mlflow_at: Callable[..., Any], tmp_path: Path
) -> None:
    port = free_port()
    with mlflow_at(tmp_path / "mlflow", port) as url:
        pass  # a real server, started and stopped: nothing answers there any more
    root = tmp_path / "artifacts"
    env = {"ARTIFACTS_DIR": str(root), "MLFLOW_TRACKING_URI": url}
    assert run_dag("data_pipeline", **env).returncode == 0
    result = run_dag("train_pipeline", **env, TASK_RETRIES="1", RETRY_DELAY_SECONDS="1")

    assert result.returncode != 0
    states = task_states("train_pipeline")
    assert states["train"] == ("success", 1)
    assert states["record"] == ("failed", 2)  # the first try and one retry
    assert {states[t][0] for t in ("quality_gate", "verify", "register", "promote")} == {"upstream_failed"}
    assert f"MLflow tracking server at MLFLOW_TRACKING_URI={url} does not answer" in result.stdout
    assert artifacts.read_current(root) is None
    assert artifacts.list_versions(root) == []
