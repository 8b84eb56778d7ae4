"""train_pipeline's MLflow steps on real tracking servers: a server stopped half-way moves nothing and loses
nothing, and the rerun does only what is missing; what is recorded is read back over MLflow's REST API."""

import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
from free_port import free_port

import penguins_contract as contract
from penguins_contract import registry
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts, tracking
from penguins_pipeline.training import steps as train_steps
from penguins_pipeline.training.train import stage_training

if TYPE_CHECKING:
    from conftest import MlflowRest  # tests/airflow/conftest.py


def test_a_stopped_server_moves_nothing_and_the_rerun_registers_what_is_missing(
    penguins: pd.DataFrame,
    quick_settings: PipelineSettings,
    tmp_path: Path,
    mlflow_at: Callable[..., Any],
    mlflow_rest: "type[MlflowRest]",
) -> None:
    root, port = tmp_path / "mlflow", free_port()
    url = f"http://127.0.0.1:{port}"
    settings = quick_settings.model_copy(update={"mlflow_tracking_uri": url, "mlflow_timeout_seconds": 5})
    staged = asdict(stage_training(penguins, settings.artifacts_dir, settings))  # what `train` hands on
    tags = {"airflow_dag_id": "train_pipeline", "airflow_run_id": "manual__1", "airflow_try_number": "1"}
    with mlflow_at(root, port):
        run_id = train_steps.record(settings, staged, tags)
    train_steps.gate(settings, staged)
    train_steps.verify(settings, staged)

    # The server is stopped (a real one, gone): each MLflow step fails at once, saying what to check.
    with pytest.raises(tracking.TrackingUnavailableError, match=f"MLFLOW_TRACKING_URI={url} does not answer"):
        train_steps.register(settings, staged, tags)
    with pytest.raises(tracking.TrackingUnavailableError, match="Nothing was registered or moved"):
        train_steps.promote(settings, staged, tags)
    assert artifacts.read_current(settings.artifacts_dir) is None  # nothing is served that is not registered
    assert artifacts.list_versions(settings.artifacts_dir) == [staged["version"]]  # and the model is kept

    with mlflow_at(root, port):
        assert train_steps.record(settings, staged, tags) == run_id  # recorded once, not twice
        number = train_steps.register(settings, staged, tags)
        assert train_steps.register(settings, staged, tags) == number
        assert train_steps.promote(settings, staged, tags) == staged["version"]

        assert artifacts.read_current(settings.artifacts_dir) == staged["version"]
        rest = mlflow_rest(url)
        [version] = rest.registered(staged["version"])
        assert version["version"] == number and version["run_id"] == run_id
        folder = artifacts.version_dir(settings.artifacts_dir, staged["version"])
        assert rest.keyed(version["tags"]) == {
            registry.TAG_VERSION: staged["version"],
            registry.TAG_SERVING_SHA256: artifacts.read_manifest(folder)["files"][contract.SERVING_FILE][
                "sha256"
            ],
        }
        assert (
            rest.aliased(registry.CHAMPION)["version"]
            == rest.aliased(registry.CHALLENGER)["version"]
            == number
        )
        found = rest.runs(f"tags.{registry.TAG_VERSION} = '{staged['version']}'")
        assert [(r["info"]["run_id"], r["info"]["status"]) for r in found] == [(run_id, "FINISHED")]
        assert rest.keyed(found[0]["data"]["tags"]).items() >= tags.items()
        # Challenger against champion (none yet) and the provenance of the training rows.
        assert rest.keyed(found[0]["data"]["tags"])["decision"] == "promoted"
        logged = rest.keyed(found[0]["data"]["metrics"])
        assert logged["challenger_heldout_accuracy"] == staged["metrics"]["accuracy"]
        assert logged["live_test_rows"] == 0
        assert not {"champion_heldout_accuracy", "challenger_live_accuracy"} & set(logged)
        logged_params = rest.keyed(found[0]["data"]["params"])
        assert (logged_params["rows_penguins_clean"], logged_params["rows_penguins_labelled"]) == (
            str(len(penguins)),
            "0",
        )


def test_a_decision_is_logged_with_both_scores_where_they_exist() -> None:
    decision = {
        "heldout": {"rows": 67, "candidate": 0.99, "champion": 0.98},
        "live": {"rows": 30, "candidate": 0.9, "champion": 0.2},
    }
    assert tracking.decision_metrics(decision) == {
        "challenger_heldout_accuracy": 0.99,
        "champion_heldout_accuracy": 0.98,
        "challenger_live_accuracy": 0.9,
        "champion_live_accuracy": 0.2,
        "live_test_rows": 30.0,
    }


# `record` in a fresh process, as in a task: an Airflow module loaded first; the warnings it raises counted.
RECORD_COUNTING_WARNINGS = """
import sys, warnings
from dataclasses import asdict
import pandas as pd
import airflow.utils.timezone  # one of Airflow's deprecated modules, loaded in every task
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import steps
from penguins_pipeline.training.train import stage_training
settings = PipelineSettings(artifacts_dir=sys.argv[2], n_estimators=20, cv_folds=3, api_url="",
                            mlflow_tracking_uri=sys.argv[3])
staged = asdict(stage_training(pd.read_pickle(sys.argv[1]), settings.artifacts_dir, settings))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert steps.record(settings, staged, {})
print(sum(str(w.message).startswith("The `airflow.") for w in caught))
"""


def test_recording_raises_no_warning_from_airflow_s_deprecated_modules(
    penguins: pd.DataFrame, tmp_path: Path, mlflow_server: Any
) -> None:
    """skops, imported to save the model, looks every numpy and scipy function up in each loaded module;
    Airflow's deprecated modules warn at each lookup: one `record` task wrote over a thousand warnings,
    seconds of the task and most of its log."""
    penguins.to_pickle(data := tmp_path / "penguins.pkl")
    done = subprocess.run(
        [sys.executable, "-c", RECORD_COUNTING_WARNINGS, str(data), str(tmp_path / "art"), mlflow_server.url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "0"
