import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_benchmark() -> Callable[..., subprocess.CompletedProcess]:
    """`python bench/<script> <args>` with the Makefile's PYTHONPATH; fails with its output if it fails."""

    def run(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
        path = os.pathsep.join(
            str(REPO / folder) for folder in ("contract", "airflow/include", "api", "scripts")
        )
        done = subprocess.run(
            [sys.executable, str(REPO / "bench" / script), *args],
            env={**os.environ, "PYTHONPATH": path},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return done

    return run
