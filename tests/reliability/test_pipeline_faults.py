"""Faults around the pipeline, through real `airflow dags test` runs: the data store going down or refusing in
the middle of data_pipeline, the API down during train_pipeline's warmup, an unwritable artifacts folder.
Each time: the failing task says why, what readers see is intact, and the run after the repair succeeds."""

import contextlib
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pymysql
import pytest
import sqlalchemy as sa
from reliability_kit import (
    API,
    DATA_STEPS_TESTS,
    TcpProxy,
    assert_unchanged,
    live_tables,
    table_names,
    when_staging_appears,
)

from app.schemas import EXAMPLE_PENGUIN
from penguins_pipeline.core.schema import CLEAN_TABLE, RAW_TABLE
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts

pytestmark = pytest.mark.slow

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "autocommit": True}
QUICK_TRAINING = {"N_ESTIMATORS": "20", "CV_FOLDS": "3"}


@dataclass
class MariaUser:
    """A MariaDB user of its own, reaching the test database through a proxy the test can unplug."""

    name: str
    password: str
    database: str
    proxy: TcpProxy

    @property
    def url(self) -> str:
        return f"mysql+pymysql://{self.name}:{self.password}@127.0.0.1:{self.proxy.port}/{self.database}"

    def admin(self, *statements: str) -> None:
        with pymysql.connect(**MARIADB, connect_timeout=5) as connection, connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def grant(self) -> None:
        self.admin(*(f"GRANT ALL PRIVILEGES ON `{self.database}`.* TO '{self.name}'@'{h}'" for h in HOSTS))

    def revoke_and_disconnect(self) -> None:
        """Refuse this user from now on, and end the connections it has (a DBA locking an account)."""
        self.admin(*(f"REVOKE ALL PRIVILEGES ON `{self.database}`.* FROM '{self.name}'@'{h}'" for h in HOSTS))
        with pymysql.connect(**MARIADB) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (self.name,))
            for (thread_id,) in cursor.fetchall():
                with contextlib.suppress(pymysql.err.OperationalError):  # it may have ended meanwhile
                    cursor.execute(f"KILL CONNECTION {int(thread_id)}")


HOSTS = ("%", "localhost")


@pytest.fixture
def maria_user(mariadb_url: str) -> Iterator[MariaUser]:
    proxy = TcpProxy(target_port=3306)
    proxy.up()
    user = MariaUser(
        f"rel_{secrets.token_hex(4)}", secrets.token_hex(12), sa.make_url(mariadb_url).database, proxy
    )
    user.admin(*(f"CREATE USER '{user.name}'@'{h}' IDENTIFIED BY '{user.password}'" for h in HOSTS))
    user.grant()
    try:
        yield user
    finally:
        proxy.down()
        user.admin(*(f"DROP USER IF EXISTS '{user.name}'@'{h}'" for h in HOSTS))


STORE_FAULTS = {
    # fault, repair, what the failed task must say
    "store_down": (lambda u: u.proxy.down(), lambda u: u.proxy.up(), "Connection refused"),
    "grants_revoked": (MariaUser.revoke_and_disconnect, MariaUser.grant, "Access denied"),
}


@pytest.mark.parametrize("fault", list(STORE_FAULTS))
def test_the_store_failing_mid_load_fails_clearly_keeps_the_tables_and_recovers(
    run_dag, task_states, maria_user: MariaUser, mariadb_url: str, figures, fault: str
) -> None:
    """`mariadb_url` (root, direct) is the test's view; the pipeline goes through the user and the proxy."""
    break_store, repair, words = STORE_FAULTS[fault]
    DATA_STEPS_TESTS.run_all(PipelineSettings(penguins_db_url=maria_user.url), "before-the-fault")
    before = live_tables(mariadb_url)

    watcher = when_staging_appears(mariadb_url, RAW_TABLE, lambda: break_store(maria_user))
    failed = run_dag(
        "data_pipeline",
        PENGUINS_DB_URL=maria_user.url,
        PENGUINS_SOURCE="synthetic:600000",
        CHUNK_ROWS="20000",
        TASK_RETRIES="2",
        RETRY_DELAY_SECONDS="2",
    )
    watcher.join(timeout=5)
    states = task_states("data_pipeline")
    assert failed.returncode != 0
    errors = [line for line in failed.stdout.splitlines() if "ERROR" in line or "Error" in line]
    assert states["ingest"] == ("failed", 3), (states, errors[-20:])  # the first try and two retries
    assert {state for task, (state, _) in states.items() if task != "ingest"} == {"upstream_failed"}
    where = re.escape(f"127.0.0.1:{maria_user.proxy.port}")
    reported = re.findall(rf"cannot reach the data store at {where} .*", failed.stdout)
    assert reported, failed.stdout[-3000:]
    assert words in failed.stdout
    assert maria_user.password not in failed.stdout
    assert_unchanged(before, mariadb_url)  # readers still see the whole previous load
    leftovers = [name for name in table_names(mariadb_url) if "__" in name]

    repair(maria_user)
    rerun = run_dag("data_pipeline", PENGUINS_DB_URL=maria_user.url, TASK_RETRIES="0")
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    after = live_tables(mariadb_url)
    assert (len(after[RAW_TABLE]), len(after[CLEAN_TABLE])) == (344, 333)
    assert set(after[RAW_TABLE]["run_id"]) == set(after[CLEAN_TABLE]["run_id"]) != {"before-the-fault"}
    assert table_names(mariadb_url) == sorted([RAW_TABLE, CLEAN_TABLE])  # leftovers swept by the rerun
    figures.record(
        "faults",
        f"data_store_{fault}_mid_load",
        {
            "cases": 1,
            "failed_task": "ingest",
            "tries": states["ingest"][1],
            "message": reported[-1][:400],
            "previous_tables_intact": True,
            "leftovers_after_the_failure": len(leftovers),
            "rerun_after_repair": "success",
        },
    )


def seed_clean_table(db_url: str) -> None:
    """penguins_clean for train_pipeline, by data_pipeline's own steps (in process: not the subject here)."""
    DATA_STEPS_TESTS.run_all(PipelineSettings(penguins_db_url=db_url), "seed")


def test_the_api_down_during_warmup_fails_the_run_visibly_and_the_api_serves_the_model_once_up(
    run_dag, task_states, tmp_path: Path, figures
) -> None:
    seed_clean_table(f"sqlite:///{tmp_path / 'penguins.db'}")
    folder = tmp_path / "artifacts"
    nobody = f"http://127.0.0.1:{API.free_port()}"  # nothing listens there: the API is down
    result = run_dag(
        "train_pipeline",
        ARTIFACTS_DIR=str(folder),
        API_URL=nobody,
        WARMUP_ATTEMPTS="3",
        WARMUP_BACKOFF_SECONDS="0.5",
        **QUICK_TRAINING,
    )
    states = {task: state for task, (state, _) in task_states("train_pipeline").items()}
    assert result.returncode != 0
    assert states["warmup"] == "failed" and states["promote"] == "success", states
    assert "attempt 1/3 failed" in result.stdout and "attempt 2/3 failed" in result.stdout
    assert f"POST {nobody}/warmup failed after 3 attempts" in result.stdout
    assert "The new version is promoted anyway" in result.stdout
    promoted = artifacts.read_current(folder)
    assert promoted is not None and artifacts.list_versions(folder) == [promoted]

    with API.running_api(folder) as url:  # the API comes up later: it serves the promoted model at once
        assert httpx.get(f"{url}/ready").json()["model_version"] == promoted
        assert httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN).json()["model_version"] == promoted
    figures.record(
        "faults",
        "api_down_during_warmup",
        {
            "cases": 1,
            "warmup_attempts": 3,
            "dag": "failed at warmup",
            "promoted": True,
            "served_once_up": True,
        },
    )


def models_is_a_file(folder: Path, versions) -> Callable[[], None]:
    """A broken mount: a regular file where the models folder should be (tests run as root: no chmod)."""
    folder.mkdir()
    (folder / "models").write_text("not a folder")
    return lambda: None


def models_is_read_only(folder: Path, versions) -> Callable[[], None]:
    """A served version, and a models folder nobody may write into, root included (chattr +i, ext4)."""
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    subprocess.run(["chattr", "+i", str(folder / "models")], check=True)
    return lambda: subprocess.run(["chattr", "-i", str(folder / "models")], check=True)


@pytest.mark.parametrize("unwritable", [models_is_a_file, models_is_read_only])
def test_an_unwritable_artifacts_folder_fails_training_clearly_and_promotes_nothing(
    run_dag, task_states, tmp_path: Path, versions, figures, unwritable
) -> None:
    seed_clean_table(f"sqlite:///{tmp_path / 'penguins.db'}")
    folder = tmp_path / "artifacts"
    restore = unwritable(folder, versions)
    try:
        current_before = (
            (folder / "current.json").read_bytes() if (folder / "current.json").exists() else None
        )
        listing_before = sorted(p.name for p in folder.rglob("*"))
        # When a version is served, a real API serves it throughout, and never notices the failed run.
        with API.running_api(folder) if current_before else contextlib.nullcontext() as url:
            result = run_dag("train_pipeline", ARTIFACTS_DIR=str(folder), **QUICK_TRAINING)
            if url:
                assert (
                    httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN).json()["model_version"]
                    == versions.main
                )
        states = task_states("train_pipeline")
        assert result.returncode != 0
        assert states["train"] == ("failed", 1), states  # a permanent error: not retried
        assert {
            state for task, (state, _) in states.items() if task not in ("train", "choose", "rollback")
        } <= {
            "upstream_failed",
            "skipped",
        }
        assert f"ARTIFACTS_DIR {folder} is not writable" in result.stdout
        current_after = (folder / "current.json").read_bytes() if (folder / "current.json").exists() else None
        assert current_after == current_before
        assert sorted(p.name for p in folder.rglob("*")) == listing_before  # nothing written, nothing left
    finally:
        restore()
    figures.record(
        "faults",
        f"artifacts_unwritable_{unwritable.__name__}",
        {
            "cases": 1,
            "failed_task": "train",
            "tries": 1,
            "promoted": False,
            "message": "names the path and the fix",
        },
    )
