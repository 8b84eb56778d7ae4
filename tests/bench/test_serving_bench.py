"""`make bench` is not part of `make test`: a short run of the serving benchmark here keeps its code (servers,
load generator, in-process timings, the README's tables) from breaking unnoticed until someone benchmarks.
It asserts that every figure was measured, never how fast: speed is judged by `make bench` alone."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_short_serving_benchmark_measures_every_figure_and_renders_its_table(tmp_path: Path) -> None:
    results_file = tmp_path / "serving.json"
    path = os.pathsep.join(str(REPO / folder) for folder in ("airflow/include", "api", "scripts"))
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "serving.py"), "--seconds", "1", "--rounds", "2",
         "--connections", "4", "--results", str(results_file)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(results_file.read_text())
    for name in ("hello", "predict"):
        assert results["throughput"][name]["requests_per_second"] > 0
        assert len(results["throughput"][name]["runs"]) == 2
        assert results["single_connection"][name]["p50_ms"] > 0
    assert all(value > 0 for value in results["in_process"].values())
    assert results["cold_start_s"] > 0 and results["neighbors_1m"]["rows"] == 1_000_000
    assert "| `POST /predict` |" in done.stdout  # the README's tables, printed
    assert f"written to {results_file}" in done.stdout
