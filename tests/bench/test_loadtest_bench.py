"""bench/loadtest.py at tiny sizes, so its code (the image under limits, Locust's steps, the cgroup's figures,
the README's tables) cannot break unnoticed until someone benchmarks. It asserts that every figure was
measured, never how fast: capacity is judged by `make bench` alone. It needs a container engine, so it runs
with the compose scenario (`make test-compose`, after CI has started the engine): without one it skips saying
so, and fails in CI."""

import json
import os
import shutil
from pathlib import Path

import pytest
from bench_tables import loadtest as loadtest_table
from compose_stack import engine_problem
from provenance import problems

from penguins_pipeline.training import artifacts


def test_a_limit_that_is_not_cpus_and_memory_is_refused_by_name(run_benchmark, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"'0\.5': expected CPUs/memory, e\.g\. 0\.5/128m"):
        run_benchmark("loadtest.py", "--limits", "0.5", "--results", str(tmp_path / "x.json"), timeout=60)
    assert not (tmp_path / "x.json").exists()


@pytest.mark.compose
def test_a_short_load_test_benchmark_measures_every_figure_and_renders_its_tables(
    run_benchmark, versions, tmp_path: Path
) -> None:
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the load-test benchmark, but {problem}")
        pytest.skip(f"{problem}; start one with ../shared/container-engine/engine-up.sh")
    folder = tmp_path / "artifacts"
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    results_file = tmp_path / "loadtest.json"
    done = run_benchmark(
        "loadtest.py", "--limits", "1/512m", "--workers", "2", "--steps", "2", "4", "--step-seconds", "4",
        "--course-users", "20", "--course-spawn-rate", "10", "--course-seconds", "4",
        "--artifacts", str(folder), "--results", str(results_file),
        timeout=900,
    )  # fmt: skip
    assert f"written to {results_file}" in done.stdout
    results = json.loads(results_file.read_text())
    assert problems(results) == []  # the commit, the date, the load
    (run,) = results["runs"]
    assert (run["cpus"], run["memory"], run["workers"]) == (1.0, "512m", 2)
    assert run["idle_memory_mib"] > 0
    assert [step["users"] for step in run["steps"]] == [2, 4][: len(run["steps"])]
    for figures in [*run["steps"], run["course"]]:
        assert figures["requests"] > 0 and figures["p95_ms"] > 0, figures
        assert figures["memory_peak_mib"] > 0 and figures["locust_cpu_share"] > 0, figures
        assert figures["killed"] is False and figures["oom_kills"] == 0, figures
    assert run["most_users_held"] in (0, 2, 4)
    table = loadtest_table(results)
    assert "| 1.0 CPU / 512m | 2 |" in table and "The course's scenario: 20 users" in table
