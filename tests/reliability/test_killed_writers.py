"""Writers killed with SIGKILL in the middle of a write (no exception handler, no cleanup runs): readers
never see a partial table or a partial model version, and the next run cleans up and succeeds.
tests/airflow/core/test_store.py and training/test_artifacts.py inject exceptions; this is the process dying
for real."""

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest
from reliability_kit import (
    API,
    DATA_STEPS_TESTS,
    REPO,
    live_tables,
    table_names,
    wait_for,
    when_staging_appears,
)

from app.loader import load_version
from app.schemas import EXAMPLE_PENGUIN
from penguins_pipeline.core.schema import CLEAN_TABLE, RAW_TABLE
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts

pytestmark = pytest.mark.slow

SOURCE_ROWS = 600_000


def kill_tree(process: psutil.Process) -> None:
    """SIGKILL a process this test started, and everything it started."""
    for child in [*process.children(recursive=True), process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)


def running_dag(dag_id: str) -> psutil.Process:
    """The `airflow dags test <dag_id>` process this test session started."""
    for process in psutil.Process().children(recursive=True):
        try:
            if process.cmdline()[-3:] == ["dags", "test", dag_id]:
                return process
        except psutil.Error:
            continue
    raise LookupError(f"no `airflow dags test {dag_id}` child process")


@pytest.mark.parametrize(
    ("store", "during"), [("mariadb", RAW_TABLE), ("mariadb", CLEAN_TABLE), ("sqlite", RAW_TABLE)]
)
def test_data_pipeline_killed_mid_write_leaves_whole_tables(
    request: pytest.FixtureRequest, run_dag, task_states, figures, store: str, during: str
) -> None:
    url = request.getfixturevalue(f"{store}_url")
    DATA_STEPS_TESTS.run_all(PipelineSettings(penguins_db_url=url), "before-the-kill")
    before = live_tables(url)
    killed_at: list[float] = []

    def kill_once_writing() -> None:
        time.sleep(random.uniform(0.2, 1.5))  # somewhere in the middle of the chunks
        killed_at.append(time.monotonic())
        kill_tree(running_dag("data_pipeline"))

    watcher = when_staging_appears(url, during, kill_once_writing)
    started = time.monotonic()
    killed = run_dag(
        "data_pipeline", PENGUINS_DB_URL=url, PENGUINS_SOURCE=f"synthetic:{SOURCE_ROWS}", CHUNK_ROWS="20000"
    )
    watcher.join(timeout=30)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:]

    after = live_tables(url)
    assert_frame = pd.testing.assert_frame_equal
    assert_frame(after[CLEAN_TABLE], before[CLEAN_TABLE], obj=CLEAN_TABLE)
    raw = after[RAW_TABLE]
    if during == RAW_TABLE:
        assert_frame(raw, before[RAW_TABLE], obj=RAW_TABLE)
    else:  # the new raw table was already published, whole: one run, every source row
        assert raw["run_id"].nunique() == 1 and len(raw) == SOURCE_ROWS
    leftovers = [name for name in table_names(url) if "__" in name]

    rerun = run_dag("data_pipeline", PENGUINS_DB_URL=url, TASK_RETRIES="0")
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert table_names(url) == sorted([RAW_TABLE, CLEAN_TABLE])
    assert len(live_tables(url)[CLEAN_TABLE]) == 333
    figures.record(
        "faults",
        f"data_pipeline_sigkill_{store}_writing_{during}",
        {
            "cases": 1,
            "killed_after_s": round(killed_at[0] - started, 1),
            "tables_whole": True,
            "leftover_staging_tables": len(leftovers),
            "rerun": "success, leftovers dropped",
        },
    )


# Trains and promotes versions back to back: the parent kills it while it writes one.
WRITER = """
import sys
import palmerpenguins
from penguins_pipeline.training import artifacts
from penguins_pipeline.core.schema import DATA_COLUMNS
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training.train import train_and_write

folder, first = sys.argv[1], int(sys.argv[2])
data = palmerpenguins.load_penguins().dropna()[DATA_COLUMNS].reset_index(drop=True)
print("ready", flush=True)
for seed in range(first, first + 1000):
    settings = PipelineSettings(artifacts_dir=folder, n_estimators=5, cv_folds=2, random_state=seed)
    artifacts.promote(folder, train_and_write(data, folder, settings))
"""
KILLS = 10


def staging_dirs(folder: Path) -> set[str]:
    """Version folders being written (hidden until published); not the writability probe."""
    models = folder / "models"
    return {p.name for p in models.iterdir() if p.name.startswith(".tmp-2")} if models.is_dir() else set()


def test_version_writes_killed_at_random_never_expose_a_partial_version(
    tmp_path: Path, versions, figures
) -> None:
    folder = tmp_path / "artifacts"
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO / f) for f in ("contract", "airflow/include")),
    }
    rng = random.Random(7)
    killed_while: Counter[str] = Counter()
    write_seconds = None  # measured on the first version: from its staging folder to its promotion
    with API.running_api(folder) as url:  # a real API polls current.json all along
        for kill in range(KILLS + 1):
            known, staged = set(artifacts.list_versions(folder)), staging_dirs(folder)
            promoted_before = artifacts.read_current(folder)
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(folder), str(1000 * (kill + 1))],
                env=env,
                stdout=subprocess.PIPE,
            )
            assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
            wait_for(lambda s=staged: staging_dirs(folder) - s, 300, "the writer staging a version", 0.005)
            if write_seconds is None:
                began = time.monotonic()
                wait_for(
                    lambda p=promoted_before: artifacts.read_current(folder) != p, 300, "a promotion", 0.005
                )
                write_seconds = time.monotonic() - began
            else:  # anywhere in staging, verifying, publishing or promoting
                time.sleep(rng.uniform(0, 1.1 * write_seconds))
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            writer.stdout.close()

            current = artifacts.read_current(folder)
            visible = artifacts.list_versions(folder)
            assert current in visible
            for version in visible:  # every visible version is whole, for the pipeline and for the API
                artifacts.verify_version(folder, version)
                load_version(folder, version)
            new = set(visible) - known
            if kill == 0:
                continue  # the calibration write, let through
            if current in new:
                killed_while["after_promoting"] += 1
            elif new:
                killed_while["after_publishing_before_promoting"] += 1
            else:
                killed_while["staging_or_verifying"] += 1

        wait_for(
            lambda: httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN).json()["model_version"] == current,
            30,
            "the API serving the last promoted version",
        )
        refused = [
            line
            for line in httpx.get(f"{url}/metrics").text.splitlines()
            if line.startswith("penguins_model_load_failures_total{") and not line.endswith(" 0.0")
        ]
        assert refused == []  # the API never met a partial version

    hidden = staging_dirs(folder)
    stray_pointers = [p.name for p in folder.glob(".current.json.*")]  # a promote killed before its rename
    # What train_pipeline's prune does a minute (the pointer) or an hour (staging) later.
    artifacts.prune(folder, keep=100, stale_after=0, stale_pointer_after=0)
    assert staging_dirs(folder) == set()
    assert list(folder.glob(".current.json.*")) == []
    assert artifacts.list_versions(folder) == visible
    figures.record(
        "faults",
        "version_writer_sigkill",
        {
            "cases": KILLS,
            "seconds_to_write_and_promote_a_version": round(write_seconds, 2),
            "killed_while": dict(killed_while),
            "partial_versions_visible": 0,
            "api_load_failures": 0,
            "hidden_staging_left_then_swept_by_prune": len(hidden),
            "stray_current_json_temp_files": len(stray_pointers),
        },
    )
