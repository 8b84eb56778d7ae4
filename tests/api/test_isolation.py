"""Serving imports nothing from the pipeline side: the artifact files and `penguins_contract` (stdlib only,
installed in both images) are the only contract; and it loads a version without the training libraries."""

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from penguins_contract import FEATURES, NUMERIC_FEATURES, PHYSICAL_BOUNDS

REPO = Path(__file__).resolve().parents[2]
API_DIR = REPO / "api"


def test_the_app_imports_nothing_from_airflow_or_the_pipeline() -> None:
    script = (
        "import json, sys; import app.main, app.__main__; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'penguins_pipeline', 'airflow', 'palmerpenguins', 'penguins_contract'})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": os.pathsep.join([str(API_DIR), str(REPO / "contract")]), "PATH": "/usr/bin:/bin"},
        cwd=API_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == ["penguins_contract"]


# What the serving process loads a version and answers with: the whole app imported, the store's own refresh.
SERVE_AND_LIST_MODULES = """
import asyncio, json, sys
from pathlib import Path
import app.main, app.__main__
from app.model_sources import FolderSource
from app.model_store import ModelStore
from app.schemas import PenguinFeatures
store = ModelStore(FolderSource(Path(sys.argv[1])), 0.2)
asyncio.run(store.refresh())
predictor = store.predictor
penguins = [PenguinFeatures(**p) for p in json.load(sys.stdin)]
batch = predictor.predict_batch(penguins, include_neighbors=True)
one_by_one = [predictor.predict(p) for p in penguins[:100]]
print(json.dumps({
    "modules": sorted(sys.modules),
    "batch": [[a["probabilities"][c] for c in predictor.classes] for a in batch],
    "one_by_one": [[a["probabilities"][c] for c in predictor.classes] for a in one_by_one],
}))
"""


def test_serving_loads_a_version_without_training_libraries_and_answers_as_sklearn(
    artifacts_dir: Path, versions, clean_penguins: pd.DataFrame
) -> None:
    """A real version loaded and answered in a fresh process: no scikit-learn, pandas, joblib or
    scipy.spatial there, nor numba or its LLVM (the loops are compiled ahead of time), and every probability
    is the very float scikit-learn gives."""
    rng = np.random.default_rng(14)
    random = pd.DataFrame({name: rng.uniform(*PHYSICAL_BOUNDS[name], 2000) for name in NUMERIC_FEATURES})
    random["island"] = rng.choice(["Biscoe", "Dream", "Torgersen"], len(random))
    random["sex"] = rng.choice(["female", "male"], len(random))
    penguins = pd.concat([clean_penguins[list(FEATURES)], random[list(FEATURES)]], ignore_index=True)
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LIST_MODULES, str(artifacts_dir)],
        input=penguins.to_json(orient="records"),
        env={"PYTHONPATH": os.pathsep.join([str(API_DIR), str(REPO / "contract")]), "PATH": "/usr/bin:/bin"},
        cwd=API_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout)
    loaded = {module.split(".")[0] for module in served["modules"]}
    assert loaded & {"sklearn", "pandas", "joblib", "numba", "llvmlite", "scipy"} == set()
    assert [m for m in served["modules"] if m.startswith("scipy.spatial")] == []
    folder = artifacts_dir / "models" / versions.main
    preprocessor, model = (joblib.load(folder / f"{name}.joblib") for name in ("preprocessor", "model"))
    expected = model.predict_proba(preprocessor.transform(penguins))
    assert np.array_equal(np.array(served["batch"]), expected)
    assert np.array_equal(np.array(served["one_by_one"]), expected[:100])
