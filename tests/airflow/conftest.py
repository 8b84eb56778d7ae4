"""Fixtures for the training tests: the real penguins as the clean table has them, quick settings, a
stand-in for the API's /warmup on a real local HTTP server, and labelled live penguins for retraining."""

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from penguins_contract import registry
from penguins_pipeline.core.schema import LABELLED_TABLE
from penguins_pipeline.core.settings import PipelineSettings


@pytest.fixture(scope="session")
def penguins(clean_penguins: pd.DataFrame) -> pd.DataFrame:
    """The `penguins_clean` content (tests/conftest.py), under the short name the training tests use."""
    return clean_penguins


@pytest.fixture
def quick_settings(tmp_path: Path) -> PipelineSettings:
    """Default parameters with fewer trees and folds: the same code paths in a fraction of the time."""
    return PipelineSettings(artifacts_dir=tmp_path / "artifacts", n_estimators=20, cv_folds=3, api_url="")


class FakeApi(ThreadingHTTPServer):
    """Answers POST /warmup with the next scripted status (then 200), recording every request's headers."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), WarmupHandler)
        self.statuses = statuses
        self.requests: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class WarmupHandler(BaseHTTPRequestHandler):
    server: FakeApi

    def do_POST(self) -> None:
        self.server.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        body = json.dumps({"model_version": "v1"} if status == 200 else {"detail": "loading"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[FakeApi]:
    server = FakeApi(list(getattr(request, "param", [])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class MlflowRest:
    """What a tracking server holds, read over MLflow's REST API with a plain HTTP client (no mlflow)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, endpoint: str, /, **params: str) -> dict:
        """GET an endpoint of MLflow's REST API; `params` may hold one named `path` (artifacts/list's)."""
        response = httpx.get(f"{self.url}/api/2.0/mlflow/{endpoint}", params=params, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def runs(self, filter_string: str) -> list[dict]:
        """Runs of experiment `penguins` matching an MLflow filter (at most 100)."""
        experiment = self.get("experiments/get-by-name", experiment_name=registry.EXPERIMENT)["experiment"]
        response = httpx.post(
            f"{self.url}/api/2.0/mlflow/runs/search",
            json={
                "experiment_ids": [experiment["experiment_id"]],
                "filter": filter_string,
                "max_results": 100,
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return response.json().get("runs", [])

    def aliased(self, alias: str) -> dict | None:
        """The registered version of `penguins` an alias points at, or None."""
        response = httpx.get(
            f"{self.url}/api/2.0/mlflow/registered-models/alias",
            params={"name": registry.REGISTERED_MODEL, "alias": alias},
            timeout=60,
        )
        return response.json()["model_version"] if response.status_code == 200 else None

    @staticmethod
    def keyed(entries: list[dict]) -> dict:
        """MLflow's `[{"key": k, "value": v}]` lists (a run's params, metrics, tags) as a dict."""
        return {entry["key"]: entry["value"] for entry in entries}

    def registered(self, version: str) -> list[dict]:
        """The registered versions of `penguins` tagged with an artifact version id."""
        filter_string = f"name = '{registry.REGISTERED_MODEL}' and tags.{registry.TAG_VERSION} = '{version}'"
        return self.get("model-versions/search", filter=filter_string).get("model_versions", [])


@pytest.fixture
def mlflow_rest() -> type[MlflowRest]:
    """`mlflow_rest(url)`: a reader of the tracking server at `url` over its REST API."""
    return MlflowRest


LIVE_ROWS = 100  # labelled live penguins; the newest 30 (LIVE_TEST_FRACTION 0.3) are the live test set


@pytest.fixture(scope="session")
def shifted_colony(make_shifted_colony: Callable[[int, int], pd.DataFrame]) -> pd.DataFrame:
    """LIVE_ROWS penguins of the shifted colony (tests/conftest.py): a model trained on `penguins_clean` alone
    takes them for Gentoo."""
    return make_shifted_colony(LIVE_ROWS, 7)


class WriteLabelled(Protocol):
    def __call__(self, url: str, penguins: pd.DataFrame, species: list[str] | None = None) -> None: ...


def _write_labelled(url: str, penguins: pd.DataFrame, species: list[str] | None = None) -> None:
    """(Re)create `penguins_labelled` as monitor_pipeline does (exactly its columns): `penguins` with their
    true `species` (theirs by default), one label a minute, in a shuffled row order (training orders them by
    labelled_at itself)."""
    start = datetime(2026, 12, 1)
    minutes = [timedelta(minutes=i) for i in range(len(penguins))]
    rows = pd.DataFrame(
        {
            "prediction_id": [f"p{i:04d}" for i in range(len(penguins))],
            "feedback_id": [f"f{i:04d}" for i in range(len(penguins))],
            "species": species if species is not None else penguins["species"].tolist(),
            **{
                column: penguins[column].to_numpy()
                for column in [
                    "island",
                    "bill_length_mm",
                    "bill_depth_mm",
                    "flipper_length_mm",
                    "body_mass_g",
                ]
            },
            "sex": penguins["sex"].to_numpy(),
            "year": 2026,
            "predicted_species": "Gentoo",
            "model_version": "20261201T000000000000Z-00000000",
            "predicted_at": [start + minute for minute in minutes],
            "labelled_at": [start + minute + timedelta(seconds=30) for minute in minutes],
        }
    ).sample(frac=1, random_state=1)
    engine = sa.create_engine(url)
    try:
        rows.to_sql(LABELLED_TABLE, engine, index=False, if_exists="replace")
    finally:
        engine.dispose()


@pytest.fixture
def write_labelled() -> WriteLabelled:
    """`write_labelled(url, penguins, species=None)`: a `penguins_labelled` table on a real data store."""
    return _write_labelled
