"""MODEL_REGISTRY=mlflow: the API follows the registry's `champion` alias on a real `mlflow server`, reading
the version's files through the server's artifact proxy, with an empty ARTIFACTS_DIR and no `mlflow` import.

The registry state is set up as train_pipeline records it (the mlflow client is fine here, in the tests): a
run of experiment `penguins` holding the version's `manifest.json` and `serving.npz` under `serving/`,
registered as model `penguins` with the tags `penguins_version` and `serving_sha256`. The alias is moved
over MLflow's REST API, as the MLflow UI does.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from pydantic import ValidationError

from app.core.config import Settings
from app.main import create_app
from app.schemas import EXAMPLE_PENGUIN
from penguins_contract import MANIFEST_FILE, SERVING_FILE, registry, sha256_file

API_DIR = Path(__file__).resolve().parents[2] / "api"
ALIAS_API = "/api/2.0/mlflow/registered-models/alias"


@dataclass(frozen=True)
class Registered:
    number: str  # the registered version's number in MLflow
    run_id: str
    experiment_id: str


def register(url: str, folder: Path, version: str) -> Registered:
    """Record `folder`'s version in MLflow as the pipeline does; a second call registers another copy."""
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(registry.EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(registry.EXPERIMENT)
    run = client.create_run(experiment_id)
    files = folder / "models" / version
    for name in (MANIFEST_FILE, SERVING_FILE):
        client.log_artifact(run.info.run_id, str(files / name), registry.RUN_SERVING_DIR)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{registry.REGISTERED_MODEL}'"):
        client.create_registered_model(registry.REGISTERED_MODEL)
    created = client.create_model_version(
        registry.REGISTERED_MODEL,
        f"runs:/{run.info.run_id}/{registry.RUN_SERVING_DIR}",
        run_id=run.info.run_id,
        tags={
            registry.TAG_VERSION: version,
            registry.TAG_SERVING_SHA256: sha256_file(files / SERVING_FILE),
        },
    )
    return Registered(created.version, run.info.run_id, experiment_id)


def move_champion(url: str, number: str) -> None:
    """What the MLflow UI does when a user moves the alias: one call to its REST API."""
    answer = httpx.post(
        f"{url}{ALIAS_API}",
        json={"name": registry.REGISTERED_MODEL, "alias": registry.CHAMPION, "version": number},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


@dataclass(frozen=True)
class Registry:
    """The session's tracking server, `main` and `other` registered (versions 1 and 2 of `penguins`)."""

    url: str
    root: Path
    main: Registered
    other: Registered


@pytest.fixture(scope="module")
def mlflow_registry(mlflow_server, versions) -> Registry:
    return Registry(
        mlflow_server.url,
        mlflow_server.root,
        register(mlflow_server.url, versions.folder, versions.main),
        register(mlflow_server.url, versions.folder, versions.other),
    )


@contextlib.contextmanager
def registry_client(tmp_path: Path, url: str, poll: float = 0.2) -> Iterator[TestClient]:
    """The app (with its lifespan) in MODEL_REGISTRY=mlflow over an ARTIFACTS_DIR that does not even exist."""
    settings = Settings(
        artifacts_dir=tmp_path / "no-artifacts",
        predictions_dir=tmp_path / "predictions",
        model_registry="mlflow",
        mlflow_tracking_uri=url,
        api_model_poll_seconds=poll,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def served_by(get: Callable[..., httpx.Response], post: Callable[..., httpx.Response]) -> str:
    answer = post("/predict", json=EXAMPLE_PENGUIN)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model_version"])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> float:
    """Seconds until `condition` held; a generous deadline for a loaded machine, never a timing claim."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(0.1)
    return time.monotonic() - start


def failures(client: TestClient, reason: str) -> float:
    prefix = f'penguins_model_load_failures_total{{reason="{reason}"}} '
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_a_real_api_with_no_artifacts_serves_the_champion_and_follows_the_alias(
    mlflow_registry: Registry, versions, api_server, tmp_path: Path
) -> None:
    move_champion(mlflow_registry.url, mlflow_registry.main.number)
    empty = tmp_path / "artifacts"
    empty.mkdir()
    with (
        api_server(empty, MODEL_REGISTRY="mlflow", MLFLOW_TRACKING_URI=mlflow_registry.url) as api,
        httpx.Client(base_url=api, timeout=30) as http,
    ):
        wait_until(lambda: http.get("/ready").status_code == 200, "serving the champion")
        assert http.get("/ready").json()["model_version"] == versions.main
        assert served_by(http.get, http.post) == versions.main
        manifest = versions.folder / "models" / versions.main / MANIFEST_FILE
        assert http.get("/model").content == manifest.read_bytes()
        move_champion(mlflow_registry.url, mlflow_registry.other.number)
        wait_until(lambda: served_by(http.get, http.post) == versions.other, "following the alias move")
    assert list(empty.iterdir()) == []  # nothing was read from, nor written to, the shared folder


def test_warmup_resolves_the_alias_at_once(mlflow_registry: Registry, versions, tmp_path: Path) -> None:
    move_champion(mlflow_registry.url, mlflow_registry.main.number)
    with registry_client(tmp_path, mlflow_registry.url, poll=3600) as client:
        assert served_by(client.get, client.post) == versions.main
        move_champion(mlflow_registry.url, mlflow_registry.other.number)
        assert served_by(client.get, client.post) == versions.main  # no poll in an hour: only /warmup
        assert client.post("/warmup").json() == {
            "model_version": versions.other,
            "previous_version": versions.main,
            "changed": True,
        }
        assert served_by(client.get, client.post) == versions.other


def test_a_damaged_artifact_is_refused_and_the_served_version_kept(
    mlflow_registry: Registry, versions, tmp_path: Path
) -> None:
    """A registered copy of `other` whose stored serving.npz was damaged at rest: refused (it matches
    neither the version tag nor the manifest), the champion before it stays; the sound copy of the same
    version is then served by polling alone (the refusal was of those files, not of the version id)."""
    damaged = register(mlflow_registry.url, versions.folder, versions.other)
    stored = (
        mlflow_registry.root
        / "artifacts"
        / damaged.experiment_id
        / damaged.run_id
        / "artifacts"
        / registry.RUN_SERVING_DIR
        / SERVING_FILE
    )
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    move_champion(mlflow_registry.url, mlflow_registry.main.number)
    with registry_client(tmp_path, mlflow_registry.url) as client:
        assert served_by(client.get, client.post) == versions.main
        before = failures(client, "checksum")
        move_champion(mlflow_registry.url, damaged.number)
        answer = client.post("/warmup")
        assert answer.status_code == 503
        detail = answer.json()["detail"]
        assert f"{registry.TAG_SERVING_SHA256}" in detail and versions.other in detail, detail
        assert f"still serving {versions.main}" in detail
        assert served_by(client.get, client.post) == versions.main
        assert client.get("/ready").status_code == 200
        assert failures(client, "checksum") >= before + 1
        move_champion(mlflow_registry.url, mlflow_registry.other.number)
        wait_until(lambda: served_by(client.get, client.post) == versions.other, "serving the sound copy")


def test_with_mlflow_stopped_the_api_keeps_serving_and_a_fresh_one_says_why(
    versions, mlflow_at, tmp_path: Path
) -> None:
    server = contextlib.ExitStack()
    url = server.enter_context(mlflow_at(tmp_path / "mlflow"))
    with server, registry_client(tmp_path / "first", url) as client:
        nothing = client.get("/ready")
        assert nothing.status_code == 503
        assert "run train_pipeline" in nothing.json()["detail"]
        warmup = client.post("/warmup").json()["detail"]
        assert f"alias {registry.CHAMPION} of registered model {registry.REGISTERED_MODEL} at {url}" in warmup
        move_champion(url, register(url, versions.folder, versions.main).number)
        wait_until(lambda: client.get("/ready").status_code == 200, "serving the champion")
        server.close()  # the tracking server stops; the API does not
        wait_until(lambda: "does not answer" in (client.get("/ready").json()["detail"] or ""), "noticing")
        assert client.get("/ready").status_code == 200
        assert served_by(client.get, client.post) == versions.main
        warmup = client.post("/warmup")
        assert warmup.status_code == 503
        assert f"still serving {versions.main}" in warmup.json()["detail"]
    with registry_client(tmp_path / "fresh", url) as fresh:
        ready = fresh.get("/ready")
        assert ready.status_code == 503
        assert url in ready.json()["detail"] and "MLFLOW_TRACKING_URI" in ready.json()["detail"]
        assert fresh.post("/predict", json=EXAMPLE_PENGUIN).status_code == 503


# The serving process following the registry: the whole app imported, the store's own source and refresh.
FOLLOW_AND_LIST_MODULES = """
import asyncio, json, sys
import app.main, app.__main__
from app.core.config import Settings
from app.model_sources import model_source
from app.model_store import ModelStore
store = ModelStore(model_source(Settings()), 0.2)
asyncio.run(store.refresh())
print(json.dumps({"version": store.predictor.version, "modules": sorted(sys.modules)}))
"""


def test_following_the_registry_imports_no_mlflow_nor_training_libraries(
    mlflow_registry: Registry, versions, tmp_path: Path
) -> None:
    move_champion(mlflow_registry.url, mlflow_registry.main.number)
    result = subprocess.run(
        [sys.executable, "-c", FOLLOW_AND_LIST_MODULES],
        env={
            "PYTHONPATH": os.pathsep.join([str(API_DIR), str(API_DIR.parent / "contract")]),
            "PATH": "/usr/bin:/bin",
            "MODEL_REGISTRY": "mlflow",
            "MLFLOW_TRACKING_URI": mlflow_registry.url,
            "ARTIFACTS_DIR": str(tmp_path / "no-artifacts"),
        },
        cwd=API_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout)
    assert served["version"] == versions.main
    loaded = {module.split(".")[0] for module in served["modules"]}
    assert loaded & {"mlflow", "sklearn", "pandas", "joblib", "airflow"} == set()


@pytest.mark.parametrize("uri", ["", "file:///tmp/mlruns", "databricks"])
def test_the_registry_mode_needs_an_http_tracking_uri(uri: str) -> None:
    with pytest.raises(ValidationError, match="MLFLOW_TRACKING_URI"):
        Settings(model_registry="mlflow", mlflow_tracking_uri=uri)
