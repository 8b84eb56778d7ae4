"""Shared by the deployment tests: the native supervisor as a module, and the environment of a native stack
on free ports under the test's folder (the stack itself: native.py). (Their fresh PostgreSQL
database, `postgres_url`, is in tests/conftest.py beside the MariaDB one.)"""

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from free_port import free_port

REPO = Path(__file__).resolve().parents[2]
# Variables of the developer's shell that would point the stack at their own state instead of the test's.
INHERITED_STATE = {
    *["AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "PENGUINS_DB_URL", "ARTIFACTS_DIR", "API_URL"],
    *["WARMUP_TOKEN", "STACK_LOG_DIR", "AIRFLOW_PORT", "API_PORT", "PREDICTIONS_DIR"],
    *["MLFLOW_TRACKING_URI", "MLFLOW_PORT", "STACK_MLFLOW_DIR"],
}


@pytest.fixture(scope="session")
def run_stack() -> ModuleType:
    """scripts/run_stack.py is a script, not a package: load it by path."""
    spec = importlib.util.spec_from_file_location("run_stack", REPO / "scripts" / "run_stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_stack"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def native_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_STATE}
    return {
        **env,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "STACK_LOG_DIR": str(tmp_path / "logs"),
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "PENGUINS_DB_URL": f"sqlite:///{tmp_path / 'penguins.db'}",
        "PREDICTIONS_DIR": str(tmp_path / "predictions"),
        "AIRFLOW_PORT": str(free_port()),
        "API_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "STACK_MLFLOW_DIR": str(tmp_path / "mlflow"),
    }
