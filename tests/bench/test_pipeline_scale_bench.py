"""A short run of the pipeline-scale benchmark (every stage, both stores, small sizes): its code cannot break
unnoticed until someone benchmarks. It asserts that every figure was measured, never how fast."""

import json
from pathlib import Path

from bench_tables import pipeline_scale
from provenance import problems

ROWS = 2000


def test_a_short_pipeline_scale_run_measures_every_stage_on_both_stores(
    tmp_path: Path, run_benchmark
) -> None:
    results_file = tmp_path / "pipeline_scale.json"
    run_benchmark("pipeline_scale.py", "--rows", str(ROWS), "--results", str(results_file), timeout=1200)
    results = json.loads(results_file.read_text())
    assert set(results) == {"data", "train", "serve"}
    for stage, entry in results.items():
        assert problems(entry) == [], stage  # each stage: its commit, date and load
        assert {(run["store"], run["rows"]) for run in entry["runs"]} == {("mariadb", ROWS), ("sqlite", ROWS)}
        for run in entry["runs"]:
            assert run["rows_per_s"] > 0 and run["peak_rss_mb"] > 0, (stage, run)
        assert set(entry["summary"]) == {"mariadb", "sqlite"}
    for stage in ("data", "train"):  # the naive way, measured in the same run
        assert {run["store"] for run in results[stage]["baseline_naive"]} == {"mariadb", "sqlite"}
    assert all(run["predict_p99_ms"] > 0 and run["api_rss_mb"] > 0 for run in results["serve"]["runs"])
    assert all(f"Stage `{stage}`" in pipeline_scale(results) for stage in results)
