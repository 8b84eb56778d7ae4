"""Fixtures of the API tests: a private copy of the session's model versions (`versions`, tests/conftest.py),
and the API run with its lifespan or as a real server."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from free_port import free_port

from app.core.config import Settings
from app.main import create_app
from penguins_pipeline.training import artifacts

API_DIR = Path(__file__).resolve().parents[2] / "api"
# What `python -m app` needs on PYTHONPATH, as in the API image: the API and the artifact contract.
API_PATH = os.pathsep.join(str(API_DIR.parent / folder) for folder in ("api", "contract"))


@pytest.fixture
def artifacts_dir(tmp_path: Path, versions) -> Path:
    """A private ARTIFACTS_DIR with both versions, `main` promoted: tests may break it as they like."""
    folder = tmp_path / "artifacts"
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    return folder


@contextmanager
def app_client(artifacts_dir: Path, **settings: object) -> Iterator[TestClient]:
    """The app with its lifespan (model store, poller every 0.2 s) over `artifacts_dir`; its prediction log
    beside it, in `predictions` (not the repository's .local/)."""
    settings.setdefault("predictions_dir", artifacts_dir.parent / "predictions")
    app = create_app(Settings(artifacts_dir=artifacts_dir, api_model_poll_seconds=0.2, **settings))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def make_client() -> object:
    """`with make_client(artifacts_dir, **settings) as client:` for tests that need their own settings."""
    return app_client


@pytest.fixture
def client(artifacts_dir: Path) -> Iterator[TestClient]:
    with app_client(artifacts_dir) as test_client:
        yield test_client


@pytest.fixture
def empty_client(tmp_path: Path) -> Iterator[TestClient]:
    """The API over an ARTIFACTS_DIR where nothing was ever trained."""
    with app_client(tmp_path / "nothing-yet") as test_client:
        yield test_client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, versions, api_server) -> Iterator[str]:
    """One real server per test module, for tests that only read: starting one costs seconds."""
    folder = tmp_path_factory.mktemp("served") / "artifacts"
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    with api_server(folder) as url:
        yield url


@pytest.fixture(scope="session")
def api_server() -> object:
    """`with api_server(artifacts_dir, **env) as url:` runs the API as a real server."""
    return running_api


@contextmanager
def running_api(artifacts_dir: Path, **env: str) -> Iterator[str]:
    """`python -m app` as users start it, on a free port; yields its base URL once /health answers. Its
    prediction log goes beside `artifacts_dir`, in `predictions`, unless `PREDICTIONS_DIR` is given."""
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": API_PATH,
        "ARTIFACTS_DIR": str(artifacts_dir),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "API_MODEL_POLL_SECONDS": "0.2",
        "PREDICTIONS_DIR": str(artifacts_dir.parent / "predictions"),
        **env,
    }
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 180  # a loaded CI machine imports scikit-learn slowly
            while not _answers(f"{url}/health"):
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the API exited with {process.returncode}: {log.read().decode()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not answer /health within 180 s")
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
