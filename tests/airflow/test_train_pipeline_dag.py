"""train_pipeline through Airflow: after data_pipeline on a real MariaDB database it promotes a version that
plain joblib loads and that classifies the held-out penguins; a `rollback_to` run promotes an older one; with
labelled live penguins a challenger replaces the champion only when it is better on the newest of them."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from airflow.models import DagBag
from airflow.sdk import AssetAny

import penguins_contract as contract
from penguins_pipeline.core.schema import CLEAN_ASSET_NAME, DRIFT_ASSET_NAME
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.core.store import read_clean
from penguins_pipeline.training import artifacts
from penguins_pipeline.training.train import data_fingerprint, prepare, split, train_and_write

if TYPE_CHECKING:
    from conftest import (  # fixtures' types (tests/conftest.py, tests/airflow/conftest.py)
        FakeApi,
        RunDag,
        WriteLabelled,
    )

DAGS = Path(__file__).resolve().parents[2] / "airflow" / "dags"

# Runs with no PYTHONPATH: only joblib, pandas and scikit-learn, as any consumer of the artifacts would. dill
# cannot be imported there (as in the API image): Airflow imports it in the task process, and an imported dill
# extends the pure-Python pickler that joblib.dump uses, so a careless dump would need dill to load.
PLAIN_LOAD = """
import json, pathlib, sys
sys.modules["dill"] = None  # `import dill` now raises ImportError
import joblib, numpy as np, pandas as pd
folder, rows = sys.argv[1], pd.read_csv(sys.argv[2])
every_file = {p.name: type(joblib.load(p)).__name__ for p in sorted(pathlib.Path(folder).glob("*.joblib"))}
load = lambda name: joblib.load(f"{folder}/{name}.joblib")
preprocessor, model, labels = load("preprocessor"), load("model"), load("label_encoder")
features = rows[["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex"]]
species = labels.inverse_transform(model.predict(preprocessor.transform(features)))
viz, split = load("training_data_for_viz"), load("training_split")
with np.load(f"{folder}/serving.npz", allow_pickle=False) as export:
    export_arrays = {name: export[name].dtype.kind for name in export.files}
try:
    import penguins_pipeline
    reachable = True
except ImportError:
    reachable = False
print(json.dumps({
    "loaded": every_file,
    "export_arrays": export_arrays,
    "accuracy": float((species == rows["species"].to_numpy()).mean()),
    "chart_points": len(viz["features_pca"]),
    "split_rows": len(split["features_raw"]),
    "project_importable": reachable,
    "foreign_modules": sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "airflow", "app"}),
}))
"""


def test_the_dag_trains_by_default_and_rolls_back_on_request() -> None:
    dag = DagBag(dag_folder=str(DAGS), safe_mode=False).dags["train_pipeline"]
    # New clean data or drift (monitor_pipeline's Asset): either one starts a run.
    condition = dag.timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert [asset.name for asset in condition.objects] == [CLEAN_ASSET_NAME, DRIFT_ASSET_NAME]
    assert dag.max_active_runs == 1
    assert dag.get_task("choose").downstream_task_ids == {"train", "rollback"}
    assert dag.get_task("record").upstream_task_ids == {"train"}
    assert dag.get_task("quality_gate").upstream_task_ids == {"train", "record"}
    assert dag.get_task("verify").upstream_task_ids == {"train", "quality_gate"}
    assert dag.get_task("register").upstream_task_ids == {"train", "verify"}
    assert dag.get_task("promote").upstream_task_ids == {"train", "register"}
    assert dag.get_task("prune").upstream_task_ids == {"promote", "rollback"}
    assert dag.get_task("prune").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("warmup").upstream_task_ids == {"prune"}
    assert dag.params["rollback_to"] is None


def plain_load(folder: Path, rows: pd.DataFrame, tmp_path: Path) -> dict:
    rows.to_csv(tmp_path / "held_out.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, str(folder), str(tmp_path / "held_out.csv")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_data_then_train_on_mariadb_promotes_a_model_plain_joblib_can_use(
    run_dag: "RunDag", task_states, mariadb_url: str, api: "FakeApi", penguins: pd.DataFrame, tmp_path: Path
) -> None:
    root = tmp_path / "shared-artifacts"
    env = {"PENGUINS_DB_URL": mariadb_url, "ARTIFACTS_DIR": str(root)}

    data = run_dag("data_pipeline", **env)
    assert data.returncode == 0, data.stdout[-5000:]
    trained = run_dag("train_pipeline", **env, API_URL=api.url, WARMUP_TOKEN="t0ken")
    assert trained.returncode == 0, trained.stdout[-5000:]

    states = {task: state for task, (state, _) in task_states("train_pipeline").items()}
    assert states == {
        **dict.fromkeys(
            ["choose", "train", "record", "quality_gate", "verify", "register", "promote", "prune", "warmup"],
            "success",
        ),
        "rollback": "skipped",
    }
    version = artifacts.read_current(root)
    assert artifacts.list_versions(root) == [version]
    assert [(r["path"], r["authorization"]) for r in api.requests] == [("/warmup", "Bearer t0ken")]

    manifest = artifacts.verify_version(root, version)
    params = manifest["params"]
    clean = prepare(read_clean(mariadb_url))
    _, held_out = split(clean, params["test_fraction"], params["random_state"], params["cv_folds"])
    assert manifest["data"]["fingerprint"] == data_fingerprint(clean)
    assert manifest["data"]["rows_test"] == len(held_out)

    loaded = plain_load(root / "models" / version, held_out, tmp_path)
    assert sorted(loaded["loaded"]) == sorted(n for n in contract.VERSION_FILES if n.endswith(".joblib"))
    # The serving export: plain arrays, loaded without unpickling by numpy alone.
    assert sorted(loaded["export_arrays"]) == sorted(contract.SERVING_ARRAYS)
    assert set(loaded["export_arrays"].values()) <= set("biufU")
    assert loaded["accuracy"] >= 0.95
    assert loaded["accuracy"] == pytest.approx(manifest["metrics"]["accuracy"])
    assert loaded["chart_points"] == loaded["split_rows"] == manifest["data"]["rows_train"]
    assert loaded["project_importable"] is False
    assert loaded["foreign_modules"] == []

    # A newer version is promoted by hand; the DAG's rollback path puts the trained one back, no training.
    quick = PipelineSettings(artifacts_dir=root, n_estimators=10, cv_folds=3)
    newer = train_and_write(penguins, root, quick)
    artifacts.promote(root, newer)
    rolled = run_dag("train_pipeline", conf={"rollback_to": version}, **env)
    assert rolled.returncode == 0, rolled.stdout[-5000:]
    states = {task: state for task, (state, _) in task_states("train_pipeline").items()}
    assert states["train"] == "skipped" and states["rollback"] == states["warmup"] == "success"
    assert artifacts.read_current(root) == version
    assert artifacts.list_versions(root) == sorted([version, newer])


def test_a_challenger_replaces_the_champion_only_when_better_on_the_newest_labels(
    run_dag: "RunDag",
    task_states,
    mariadb_url: str,
    tmp_path: Path,
    shifted_colony: pd.DataFrame,
    write_labelled: "WriteLabelled",
) -> None:
    root = tmp_path / "shared-artifacts"
    env = {
        "PENGUINS_DB_URL": mariadb_url,
        "ARTIFACTS_DIR": str(root),
        "N_ESTIMATORS": "20",
        "CV_FOLDS": "3",
        "MIN_LIVE_LABELLED": "20",
    }
    decision_file = root / "retraining" / "latest.json"
    assert run_dag("data_pipeline", **env).returncode == 0
    first = run_dag("train_pipeline", **env)
    assert first.returncode == 0, first.stdout[-5000:]
    champion = artifacts.read_current(root)
    first_decision = json.loads(decision_file.read_text())  # no champion yet, no labels: the gate decides
    assert first_decision["promoted"] is True and first_decision["champion"] is None
    assert first_decision["live"] == {"rows": 0, "candidate": None, "champion": None}

    # The shifted colony's true species come back as labels: the challenger learns them and is promoted.
    write_labelled(mariadb_url, shifted_colony)
    better = run_dag("train_pipeline", **env)
    assert better.returncode == 0, better.stdout[-5000:]
    decision = json.loads(decision_file.read_text())
    assert decision["promoted"] is True and decision["champion"] == champion
    assert decision["live"]["rows"] == 30 and decision["live"]["candidate"] > decision["live"]["champion"]
    assert artifacts.read_current(root) == decision["candidate"] != champion
    assert "Decision promote: held-out gate passed and live accuracy" in better.stdout
    champion = decision["candidate"]

    # The newest labels contradict the older ones: no challenger can win; the champion stays and the run
    # succeeds.
    write_labelled(mariadb_url, shifted_colony, ["Adelie"] * 70 + ["Chinstrap"] * 30)
    kept = run_dag("train_pipeline", **env)
    assert kept.returncode == 0, kept.stdout[-5000:]
    states = {task: state for task, (state, _) in task_states("train_pipeline").items()}
    assert states == {
        **dict.fromkeys(["choose", "train", "record", "quality_gate"], "success"),
        **dict.fromkeys(["rollback", "verify", "register", "promote", "prune", "warmup"], "skipped"),
    }
    decision = json.loads(decision_file.read_text())
    assert decision["promoted"] is False and decision["champion"] == champion
    assert decision["reason"].startswith(f"challenger rejected, champion {champion} kept")
    assert "Decision keep the champion: challenger rejected" in kept.stdout
    assert artifacts.read_current(root) == champion
    assert decision["candidate"] not in artifacts.list_versions(root)
