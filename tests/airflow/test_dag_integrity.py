"""Every file in airflow/dags imports cleanly and follows the project's rules; new DAGs are checked too."""

import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from airflow.models import DagBag
from airflow.sdk import Asset

from penguins_pipeline.schema import CLEAN_ASSET_NAME

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow" / "dags"
DAG_FILES = sorted(DAGS.glob("*.py"))


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    # safe_mode=False: every .py file is imported, not only those mentioning "airflow" and "dag".
    return DagBag(dag_folder=str(DAGS), safe_mode=False)


def test_every_dag_file_imports_and_defines_a_dag(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert {Path(dag.fileloc) for dag in dagbag.dags.values()} == set(DAG_FILES)
    assert "data_pipeline" in dagbag.dag_ids


def test_every_dag_is_documented_tagged_retried_and_never_catches_up(dagbag: DagBag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and dag.doc_md.strip(), f"{dag_id} has no doc_md"
        assert dag.default_args.get("retries", 0) >= 1, f"{dag_id} does not retry by default"
        assert not dag.catchup, f"{dag_id} catches up"


def test_dag_files_leave_heavy_imports_to_the_tasks() -> None:
    # The dag-processor re-parses every file every ~30 s: pandas, numpy and scikit-learn belong in tasks.
    files = [str(path) for path in DAG_FILES]
    code = (
        f"import json, runpy, sys\nfor f in {files!r}: runpy.run_path(f)\n"
        "print(json.dumps(list(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "airflow" / "include")}
    parsed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    heavy = {"pandas", "numpy", "sklearn", "seaborn"} & set(json.loads(parsed.stdout.splitlines()[-1]))
    assert not heavy, f"parsing the DAG files imports {heavy}"


def test_data_pipeline_is_wired_as_documented(dagbag: DagBag) -> None:
    dag = dagbag.dags["data_pipeline"]
    chain = ["ingest", "store_raw", "clean", "store_clean", "validate"]
    assert set(dag.task_ids) == set(chain)
    for upstream, downstream in itertools.pairwise(chain):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    assert dag.get_task("validate").outlets == [Asset(CLEAN_ASSET_NAME)]
    # Runs once by itself on a fresh stack, one run at a time.
    assert type(dag.timetable).__name__ == "OnceTimetable"
    assert dag.start_date < datetime.now(UTC)
    assert dag.max_active_runs == 1
