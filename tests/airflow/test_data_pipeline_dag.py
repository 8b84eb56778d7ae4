"""data_pipeline run for real by Airflow (`airflow dags test`) on SQLite and on a fresh MariaDB database.

Each Airflow run costs seconds: the rules themselves are tested without Airflow (test_data_steps.py); here,
what only a real run shows: task wiring, states, retries, logs, and readers during a run.
"""

import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import palmerpenguins
import pandas as pd
import sqlalchemy as sa
from free_port import free_port

from penguins_pipeline.core import store
from penguins_pipeline.core.bulk import read_frames
from penguins_pipeline.core.schema import DATA_COLUMNS, RAW_TABLE, ROW_KEY
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.data import steps as data_steps

RunDag = Callable[..., subprocess.CompletedProcess[str]]
TaskStates = Callable[[str], dict[str, tuple[str, int]]]
KeepReading = Callable[..., AbstractContextManager[list[int]]]
TASKS = ["ingest", "store_raw", "clean", "store_clean", "validate"]
REPORT = (
    "344 rows in, dropped: missing_value 11, unknown_category 0, out_of_bounds 0, duplicate 0; 333 rows out"
)


def tables(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """penguins_raw and penguins_clean as a reader sees them; nothing else may be left in the store."""
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            assert sorted(sa.inspect(conn).get_table_names()) == ["penguins_clean", "penguins_raw"]
            raw = pd.concat(read_frames(conn, store.raw_table(RAW_TABLE), 50_000), ignore_index=True)
    finally:
        engine.dispose()
    return raw, store.read_clean(url)


def assert_succeeded(result: subprocess.CompletedProcess[str], task_states: TaskStates) -> None:
    assert result.returncode == 0, result.stdout[-5000:]
    assert task_states("data_pipeline") == {task: ("success", 1) for task in TASKS}


def test_a_run_on_sqlite_fills_both_tables(run_dag: RunDag, task_states: TaskStates, sqlite_url: str) -> None:
    result = run_dag("data_pipeline", PENGUINS_DB_URL=sqlite_url)
    assert_succeeded(result, task_states)
    assert REPORT in result.stdout
    raw, clean = tables(sqlite_url)
    assert len(raw) == 344 and len(clean) == 333
    assert raw["sex"].isna().sum() == 11
    pd.testing.assert_frame_equal(raw[DATA_COLUMNS], palmerpenguins.load_penguins(), check_dtype=False)


def test_runs_on_mariadb_repeat_identically_and_never_show_a_partial_table(
    run_dag: RunDag, task_states: TaskStates, keep_reading: KeepReading, mariadb_url: str
) -> None:
    assert_succeeded(run_dag("data_pipeline", PENGUINS_DB_URL=mariadb_url), task_states)
    raw, clean = tables(mariadb_url)
    assert len(raw) == 344 and len(clean) == 333
    # Again, while a reader keeps reading: it must see all 333 rows every time, never fewer, never an error.
    with keep_reading(lambda: len(store.read_clean(mariadb_url))) as seen:
        again = run_dag("data_pipeline", PENGUINS_DB_URL=mariadb_url)
    assert_succeeded(again, task_states)
    assert seen and set(seen) == {333}
    raw_again, clean_again = tables(mariadb_url)
    pd.testing.assert_frame_equal(clean_again, clean)
    pd.testing.assert_frame_equal(raw_again[[ROW_KEY, *DATA_COLUMNS]], raw[[ROW_KEY, *DATA_COLUMNS]])
    assert raw_again["run_id"].nunique() == 1 and set(raw_again["run_id"]) != set(raw["run_id"])


def test_an_unreachable_store_fails_after_its_retries_naming_host_and_url(
    run_dag: RunDag, task_states: TaskStates
) -> None:
    port = free_port()  # nothing listens there once the probe is closed
    url = f"mysql+pymysql://penguins:n0t-pr1nted@127.0.0.1:{port}/penguins"
    result = run_dag("data_pipeline", PENGUINS_DB_URL=url, TASK_RETRIES="1", RETRY_DELAY_SECONDS="1")
    assert result.returncode != 0
    states = task_states("data_pipeline")
    assert states["ingest"] == ("failed", 2)  # the first try and one retry
    assert all(state == "upstream_failed" for task, (state, _) in states.items() if task != "ingest")
    expected = (
        f"cannot reach the data store at 127.0.0.1:{port} (PENGUINS_DB_URL=mysql+pymysql://penguins:***@"
    )
    assert expected in result.stdout
    assert "n0t-pr1nted" not in result.stdout


def test_a_source_failing_midway_fails_at_once_and_keeps_the_tables(
    run_dag: RunDag, task_states: TaskStates, sqlite_url: str, tmp_path: Path
) -> None:
    settings = PipelineSettings(penguins_db_url=sqlite_url)
    data_steps.store_raw(settings, data_steps.ingest(settings, "earlier-run"))
    data_steps.store_clean(settings, data_steps.clean(settings, "earlier-run"))
    before = tables(sqlite_url)
    broken = palmerpenguins.load_penguins()
    broken["body_mass_g"] = broken["body_mass_g"].astype(object)
    broken.loc[250, "body_mass_g"] = "4 kg"
    broken.to_csv(tmp_path / "broken.csv", index=False)
    source = f"csv:{tmp_path / 'broken.csv'}"
    result = run_dag("data_pipeline", PENGUINS_DB_URL=sqlite_url, PENGUINS_SOURCE=source, CHUNK_ROWS="100")
    assert result.returncode != 0
    assert task_states("data_pipeline")["ingest"] == ("failed", 1)  # a broken file is not retried
    assert "has wrong types in column(s): body_mass_g (1 value(s) not a number, e.g. '4 kg')" in result.stdout
    for old, new in zip(before, tables(sqlite_url), strict=True):
        pd.testing.assert_frame_equal(new, old)
