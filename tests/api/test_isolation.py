"""Serving imports nothing from the pipeline side: the artifact files and `penguins_contract` (stdlib only,
installed in both images) are the only contract."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
