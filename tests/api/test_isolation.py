"""Serving imports nothing from the pipeline side: the artifact files are the only contract."""

import json
import subprocess
import sys
from pathlib import Path

API_DIR = Path(__file__).resolve().parents[2] / "api"


def test_the_app_imports_nothing_from_airflow_or_the_pipeline() -> None:
    script = (
        "import json, sys; import app.main, app.__main__; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('penguins_pipeline', 'airflow', 'palmerpenguins'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(API_DIR), "PATH": "/usr/bin:/bin"},
        cwd=API_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == []
