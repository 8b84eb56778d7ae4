"""The sweep on a real MLflow server: 20 variations as runs nested under one parent, the best by
cross-validated macro-F1 trained and registered; only the gate makes it `challenger`, nothing makes it
`champion`."""

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from penguins_contract import registry
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts, sweep
from penguins_pipeline.training.train import train_and_write

if TYPE_CHECKING:
    from conftest import MlflowRest, MlflowServer  # tests/airflow/conftest.py, tests/conftest.py

# 5 x 2 x 2 = 20 small forests: the same code path as the default grid, in seconds.
SMALL_GRID = {"n_estimators": (2, 3, 4, 5, 6), "max_depth": (None, 2), "min_samples_leaf": (1, 3)}


def test_the_sweep_nests_its_variations_and_registers_the_best_without_promoting_it(
    penguins: pd.DataFrame, mlflow_server: "MlflowServer", tmp_path: Path, mlflow_rest: "type[MlflowRest]"
) -> None:
    rest = mlflow_rest(mlflow_server.url)
    root = tmp_path / "artifacts"
    served = train_and_write(penguins, root, PipelineSettings(artifacts_dir=root, n_estimators=5, cv_folds=2))
    artifacts.promote(root, served)
    champion_before = (rest.aliased(registry.CHAMPION) or {}).get("version")
    # A gate any model passes: which of these tiny forests beats the served one is up to chance.
    settings = PipelineSettings(
        artifacts_dir=root,
        cv_folds=2,
        mlflow_tracking_uri=mlflow_server.url,
        api_url="",
        min_accuracy=0.0,
        gate_tolerance=1.0,
    )

    result = sweep.sweep(settings, penguins, SMALL_GRID)

    assert len(sweep.variations(SMALL_GRID)) == result.variations == 20
    children = rest.runs(f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    variations = [r for r in children if rest.keyed(r["data"]["tags"]).get("sweep") == "child"]
    assert len(variations) == 20 and len(children) == 21  # and the winner's full run
    scores = {}
    for run in variations:
        params = rest.keyed(run["data"]["params"])
        scores[tuple(params[k] for k in SMALL_GRID)] = rest.keyed(run["data"]["metrics"])["cv_f1_macro_mean"]
    assert len(scores) == 20
    assert result.best_score == max(scores.values())
    assert scores[tuple(str(result.best[k]) for k in SMALL_GRID)] == result.best_score
    [winner] = [r for r in children if rest.keyed(r["data"]["tags"]).get("sweep") == "winner"]
    assert rest.keyed(winner["data"]["tags"])[registry.TAG_VERSION] == result.version
    assert {k: rest.keyed(winner["data"]["params"])[k] for k in SMALL_GRID} == {
        k: str(v) for k, v in result.best.items()
    }

    # Registered and, having passed the gate, the challenger; never the champion.
    assert result.challenger, result.verdict
    assert rest.aliased(registry.CHALLENGER)["version"] == result.registered_version
    assert (rest.aliased(registry.CHAMPION) or {}).get("version") == champion_before
    assert artifacts.read_current(root) == served
    assert result.version in artifacts.list_versions(root)
