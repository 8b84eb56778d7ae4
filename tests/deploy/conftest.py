"""Shared by the deployment tests: the native supervisor as a module, a free port. (Their fresh PostgreSQL
database, `postgres_url`, is in tests/conftest.py beside the MariaDB one.)"""

import importlib.util
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

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
def free_port() -> Callable[[], int]:
    """`free_port()`: a TCP port nothing listens on now (other engineers' servers use the fixed ones)."""

    def pick() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    return pick
