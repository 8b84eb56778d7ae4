"""`make bench` is not part of `make test`: a short run of the serving benchmark here keeps its code (servers,
load generator, in-process timings, the README's tables) from breaking unnoticed until someone benchmarks.
It asserts that every figure was measured, never how fast: speed is judged by `make bench` alone."""

import json
import socket
from pathlib import Path

import psutil
import pytest
from provenance import problems
from serving import run_wrk, wrk_script


def test_a_short_serving_benchmark_measures_every_figure_and_renders_its_table(
    tmp_path: Path, run_benchmark
) -> None:
    results_file = tmp_path / "serving.json"
    done = run_benchmark(
        "serving.py", "--seconds", "1", "--rounds", "2", "--connections", "4", "--results", str(results_file),
        timeout=900,
    )  # fmt: skip
    results = json.loads(results_file.read_text())
    assert problems(results) == []  # the commit, the date, the load
    for name in ("hello", "predict"):
        assert results["throughput"][name]["requests_per_second"] > 0
        assert len(results["throughput"][name]["runs"]) == 2
        assert results["single_connection"][name]["p50_ms"] > 0
    # The prediction log's cost: a server with PREDICTIONS_LOG=false in the same rounds, batches in turns.
    assert len(results["throughput"]["predict_log_off"]["runs"]) == 2
    assert results["ratios"]["throughput_log_on_over_off"] > 0
    assert results["ratios"]["server_cpu_per_request_log_on_over_off"] > 0
    assert results["http_batch_10000_log_off_ms"] > 0 and results["http_batch_10000_no_neighbors_ms"] > 0
    assert results["ratios"]["http_batch_10000_log_on_over_off"] > 0
    assert all(value > 0 for value in results["in_process"].values())
    assert results["cold_start_s"] > 0 and results["neighbors_1m"]["rows"] == 1_000_000
    assert "| `POST /predict` |" in done.stdout  # the README's tables, printed
    assert "with the prediction log ÷ without" in done.stdout
    assert f"written to {results_file}" in done.stdout


def test_a_load_run_without_a_single_answer_says_so(tmp_path: Path) -> None:
    """A server that accepts connections and never answers (as an overloaded machine looks): a clear error,
    not a division by zero."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/predict"
        script = wrk_script([{"island": "Dream"}], tmp_path)
        with pytest.raises(RuntimeError, match="no request answered within 1 s"):
            run_wrk(url, psutil.Process(), script, 1, 1)
