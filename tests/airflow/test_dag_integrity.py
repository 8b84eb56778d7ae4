"""Every file in airflow/dags imports cleanly and follows the project's rules; new DAGs are checked too."""

import ast
import importlib
import inspect
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

from penguins_pipeline.core.schema import CLEAN_ASSET_NAME, DRIFT_ASSET_NAME

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
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO / f) for f in ("contract", "airflow/include")),
    }
    parsed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    heavy = {"pandas", "numpy", "sklearn", "seaborn"} & set(json.loads(parsed.stdout.splitlines()[-1]))
    assert not heavy, f"parsing the DAG files imports {heavy}"


def step_calls(tree: ast.Module) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "run_step"
    ]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda path: path.name)
def test_tasks_call_their_steps_by_reference_never_by_name(path: Path) -> None:
    # A task names its step function itself (`run_step(train_steps.train)`), so readers, IDEs and type
    # checkers follow it to the code; a string looked up with getattr hides it from all three.
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert "getattr" not in names, f"{path.name} looks a name up with getattr"
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "run_step" not in defined, f"{path.name} defines its own run_step, beside task_runner's"
    # `from penguins_pipeline.training import steps as train_steps` inside a task: name -> module.
    imported = {
        alias.asname or alias.name: f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("penguins_pipeline")
        for alias in node.names
    }
    for call in step_calls(tree):
        step = call.args[0] if call.args else None
        assert isinstance(step, ast.Attribute) and isinstance(step.value, ast.Name), (
            f"{path.name}:{call.lineno}: run_step needs `<steps module>.<function>`, not {ast.unparse(call)}"
        )
        assert step.value.id in imported, f"{path.name}:{call.lineno}: {step.value.id} is not imported"
        module = importlib.import_module(imported[step.value.id])
        function = getattr(module, step.attr, None)
        assert inspect.isfunction(function) and function.__module__ == module.__name__, (
            f"{path.name}:{call.lineno}: {ast.unparse(step)} is not a step of {module.__name__}"
        )


def test_every_task_of_the_pipelines_runs_through_the_one_runner() -> None:
    calls = {path.name: len(step_calls(ast.parse(path.read_text()))) for path in DAG_FILES}
    assert calls["data_pipeline.py"] == 5
    assert calls["train_pipeline.py"] == 9
    assert calls["monitor_pipeline.py"] == 2  # `announce` only decides whether the Asset event is emitted


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


def test_monitor_pipeline_is_wired_as_documented(dagbag: DagBag) -> None:
    dag = dagbag.dags["monitor_pipeline"]
    chain = ["load", "check_drift", "announce"]
    assert set(dag.task_ids) == set(chain)
    for upstream, downstream in itertools.pairwise(chain):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    assert dag.get_task("announce").outlets == [Asset(DRIFT_ASSET_NAME)]
    assert DRIFT_ASSET_NAME == "penguins_drift"  # fixed by DESIGN.md
    # Every hour, one run at a time; it never trains itself (no task of train_pipeline's): its Asset does.
    assert dag.schedule == "@hourly"
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert dag.max_active_runs == 1
    assert not {"train", "promote"} & set(dag.task_ids)


def test_new_clean_data_or_drift_starts_a_training_run(dagbag: DagBag) -> None:
    # train_pipeline consumes the very Assets the other two DAGs emit, either one alone being enough.
    emitted = [
        *dagbag.dags["data_pipeline"].get_task("validate").outlets,
        *dagbag.dags["monitor_pipeline"].get_task("announce").outlets,
    ]
    condition = dagbag.dags["train_pipeline"].timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"
    assert [asset.name for asset in condition.objects] == [asset.name for asset in emitted]
