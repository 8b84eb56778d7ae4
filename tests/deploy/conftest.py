"""Shared by the deployment tests: the native supervisor as a module, and the environment of a native stack
on free ports under the test's folder (the stack itself and that environment: native.py). (Their fresh
PostgreSQL database, `postgres_url`, is in tests/conftest.py beside the MariaDB one.)"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from native import native_environment

REPO = Path(__file__).resolve().parents[2]


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
    return native_environment(tmp_path)
