"""Fixtures shared by every test: fresh databases on the real servers, real Airflow DAG runs, and real model
versions trained once per session (the API tests, the reliability suite and the docs tests all serve them).

A missing service is a failure, never a skip: CI (`.ci/run`) starts MariaDB and PostgreSQL before the tests.
"""

import contextlib
import functools
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import mlflow_server as mlflow_launcher
import numpy as np
import palmerpenguins
import pandas as pd
import pytest
import sqlalchemy as sa
from free_port import free_port
from scratch_database import scratch_database

from penguins_pipeline.core.schema import DATA_COLUMNS
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training.train import train_and_write

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).parent / "airflow"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306"
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"

RunDag = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(autouse=True)
def no_tracking_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests train without MLflow unless they test it (they pass MLFLOW_TRACKING_URI then): natively the
    setting defaults to a server on 127.0.0.1:5000, which may be a developer's own. Set again for every test:
    `mlflow.set_tracking_uri` writes the variable into the process's environment, so a tracking test would
    otherwise hand its (stopped) server to every test after it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite data store in a file of the test's own temporary folder."""
    return f"sqlite:///{tmp_path / 'penguins.db'}"


def fresh_database(server_url: str, prefix: str, server: str) -> Iterator[str]:
    """The database fixtures' body: a scratch database (scripts/scratch_database.py) on `server_url`, dropped
    afterwards; a `server` that does not answer fails the test."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_database(server_url, prefix))
        except sa.exc.OperationalError as err:
            pytest.fail(f"{server} does not answer ({err}); start it as .ci/run does")
        yield url


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh, uniquely named database on the local MariaDB (127.0.0.1:3306, root), dropped afterwards."""
    yield from fresh_database(MARIADB, "penguins_test", "MariaDB on 127.0.0.1:3306")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL (127.0.0.1:5432, trust), dropped afterwards (even while a
    session of the test still uses it)."""
    yield from fresh_database(POSTGRES, "penguins_e2e", "PostgreSQL on 127.0.0.1:5432")


def airflow_env(home: Path, **overrides: str) -> dict[str, str]:
    """The environment of an Airflow process: the test's AIRFLOW_HOME and settings, none of the caller's."""
    settings = {name.upper() for name in PipelineSettings.model_fields}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW") and key not in settings and key != "PYTHONPATH"
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "airflow" / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        PYTHONPATH=os.pathsep.join(str(REPO / folder) for folder in ("contract", "airflow/include", "api")),
    )
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AIRFLOW_HOME whose SQLite metadata database is migrated once for the whole session."""
    home = tmp_path_factory.mktemp("airflow_home")
    migrate = subprocess.run(
        [str(AIRFLOW), "db", "migrate"], env=airflow_env(home), capture_output=True, text=True, timeout=600
    )
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stdout}\n{migrate.stderr}"
    return home


@pytest.fixture
def airflow_environment(airflow_home: Path) -> Callable[..., dict[str, str]]:
    """`airflow_environment(**overrides)`: airflow_env with the session's migrated AIRFLOW_HOME, for a test
    that runs Airflow its own way (through make, say)."""
    return functools.partial(airflow_env, airflow_home)


@pytest.fixture
def run_dag(airflow_home: Path, tmp_path: Path) -> RunDag:
    """`run_dag(dag_id, conf=None, **env)`: `airflow dags test <dag_id>` in a subprocess (`conf`: the run's
    params, e.g. {"rollback_to": ...}); stdout holds stderr too.

    By default the data store, the artifacts and the warmup point into the test's temporary folder (no
    warmup call, no tracking); pass e.g. PENGUINS_DB_URL=..., ARTIFACTS_DIR=... to change them.
    """

    def run(dag_id: str, conf: dict | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        defaults = {
            "PENGUINS_DB_URL": f"sqlite:///{tmp_path / 'penguins.db'}",
            "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
            "API_URL": "",
            "MLFLOW_TRACKING_URI": "",
        }
        return subprocess.run(
            [str(AIRFLOW), "dags", "test", dag_id, *(["--conf", json.dumps(conf)] if conf else [])],
            env=airflow_env(airflow_home, **{**defaults, **env}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=900,
        )

    return run


@pytest.fixture
def task_states(airflow_home: Path) -> Callable[[str], dict[str, tuple[str, int]]]:
    """`task_states(dag_id)`: task id -> (state, tries) in the latest run of `dag_id` (Airflow's metadata)."""

    def states(dag_id: str) -> dict[str, tuple[str, int]]:
        with sqlite3.connect(airflow_home / "airflow.db") as db:
            rows = db.execute(
                "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = "
                "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
                (dag_id, dag_id),
            ).fetchall()
        return {task_id: (state, tries) for task_id, state, tries in rows}

    return states


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each data store the pipeline supports, in turn: the test runs once on SQLite, once on MariaDB."""
    return request.getfixturevalue(f"{request.param}_url")


@contextmanager
def reading_continuously(read: Callable[[], int], pause: float = 0.1) -> Iterator[list[int]]:
    """Call `read` every `pause` seconds in a thread while the block runs; yields the results, re-raises
    a reader's error. The pause leaves CPU to the writer being watched (a partial table lasts far longer)."""
    results: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def loop() -> None:
        while True:
            try:
                results.append(read())
            except BaseException as err:  # any failure of a reader is what the caller looks for
                errors.append(err)
                return
            if done.wait(pause):
                return

    reader = threading.Thread(target=loop)
    reader.start()
    try:
        yield results
    finally:
        done.set()
        reader.join(timeout=120)
    if errors:
        raise AssertionError(f"a reader failed after {len(results)} reads") from errors[0]


@pytest.fixture
def keep_reading() -> Callable[..., contextlib.AbstractContextManager[list[int]]]:
    """`with keep_reading(lambda: len(read_clean(url))) as seen:`: what readers see while the block runs."""
    return reading_continuously


@dataclass(frozen=True)
class Versions:
    """A folder holding two published versions: `main` (the default forest) and `other` (a smaller one)."""

    folder: Path
    main: str
    other: str


@pytest.fixture(scope="session")
def clean_penguins() -> pd.DataFrame:
    """What `penguins_clean` holds: palmerpenguins without the rows that miss a value."""
    return palmerpenguins.load_penguins().dropna()[DATA_COLUMNS].reset_index(drop=True)


class MakeColony(Protocol):
    def __call__(self, rows: int, seed: int) -> pd.DataFrame: ...


@pytest.fixture(scope="session")
def make_shifted_colony(clean_penguins: pd.DataFrame) -> MakeColony:
    """`make_shifted_colony(rows, seed)`: Adelie penguins heavier than any in training, with Gentoo-long
    flippers, on Biscoe (their true species Adelie): the population a model trained on `penguins_clean` alone
    takes for Gentoo, for the retraining tests and the native feedback loop."""

    def colony(rows: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        adelie = clean_penguins[clean_penguins["species"] == "Adelie"]
        return (
            adelie.sample(rows, replace=True, random_state=seed)
            .assign(
                island="Biscoe",
                body_mass_g=rng.uniform(6500, 7500, rows).round(),
                flipper_length_mm=rng.uniform(222, 235, rows).round(),
            )
            .reset_index(drop=True)
        )

    return colony


@pytest.fixture(scope="session")
def versions(tmp_path_factory: pytest.TempPathFactory, clean_penguins: pd.DataFrame) -> Versions:
    """Real versions written by the pipeline's own writer (the API side never imports it; its tests may),
    once per session for every folder: read them, never change them (copy the folder first)."""
    folder = tmp_path_factory.mktemp("versions")
    main = train_and_write(clean_penguins, folder, PipelineSettings(artifacts_dir=folder, cv_folds=2))
    other = train_and_write(
        clean_penguins,
        folder,
        PipelineSettings(artifacts_dir=folder, cv_folds=2, n_estimators=15, random_state=7),
    )
    return Versions(folder, main, other)


# A first start migrates a fresh SQLite database: minutes on a machine busy with other test runs.
MLFLOW_START_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class MlflowServer:
    """A real `mlflow server` (scripts/mlflow_server.py): its URL, and its files (SQLite backend, and the
    artifacts it proxies under `root/artifacts`)."""

    url: str
    root: Path


@pytest.fixture(scope="session")
def mlflow_at() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """`with mlflow_at(root[, port]) as url:` a tracking server of the caller's own, files under `root`, on
    `port` (a free one by default: a test that stops and restarts it passes the same port); stopped when the
    block ends (a test may end it early to see the server go away)."""

    def start(root: Path, port: int | None = None) -> contextlib.AbstractContextManager[str]:
        return mlflow_launcher.running(root, port or free_port(), timeout=MLFLOW_START_TIMEOUT_S)

    return start


@pytest.fixture(scope="session")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, mlflow_at: Callable[..., contextlib.AbstractContextManager[str]]
) -> Iterator[MlflowServer]:
    """One tracking server for the session, as the project runs it natively; stopped at the end. Tests find
    what they made by its tags."""
    root = tmp_path_factory.mktemp("mlflow")
    with mlflow_at(root) as url:
        yield MlflowServer(url, root)


def make_loadtest(
    host: str, results: Path, users: int, seconds: int, spawn_rate: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`make loadtest` as a user runs it (Locust, bench/locustfile.py), its settings from the environment and
    its reports in `results`."""
    env = {
        **os.environ,
        "LOADTEST_HOST": host,
        "LOADTEST_USERS": str(users),
        "LOADTEST_SPAWN_RATE": str(spawn_rate or users),
        "LOADTEST_RUN_TIME": f"{seconds}s",
        "LOADTEST_RESULTS_DIR": str(results),
    }
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), "loadtest"], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def loadtest() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`loadtest(host, results, users=, seconds=)`: a `make loadtest` run, for the API and compose tests."""
    return make_loadtest
