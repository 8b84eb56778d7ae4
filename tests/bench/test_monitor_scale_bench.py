"""A short run of the monitor-scale benchmark on MariaDB: the drift check's memory is bounded (its peak RSS
at ten times the rows is about the same, where the naive whole-window read grows), and the report counts the
whole window while judging a sample of DRIFT_SAMPLE_ROWS. Ratios only, never how fast."""

import json
from pathlib import Path

SAMPLE_ROWS = 5_000
SMALL, LARGE = 20_000, 200_000


def test_the_drift_check_holds_a_sample_not_the_window(tmp_path: Path, run_benchmark) -> None:
    results_file = tmp_path / "monitor_scale.json"
    run_benchmark(
        "monitor_scale.py",
        *("--rows", f"{SMALL},{LARGE}", "--sample-rows", str(SAMPLE_ROWS)),
        *("--naive-max", str(LARGE), "--order-by-rand-max", "0", "--results", str(results_file)),
        timeout=1500,
    )
    results = json.loads(results_file.read_text())
    small, large = results["runs"]
    assert (small["rows"], large["rows"]) == (SMALL, LARGE)
    for entry in (small, large):
        check = entry["check_drift"]
        assert (check["n_predictions"], check["n_sampled"]) == (entry["rows"], SAMPLE_ROWS)
        assert check["drifted_features"] == ["flipper_length_mm"]  # the base rows' shift, seen in the sample
    # Memory: above the libraries, ten times the rows cost the check (almost) nothing more; the naive read
    # of the same windows grows with them.
    check_growth = large["check_drift"]["peak_rss_mb"] / small["check_drift"]["peak_rss_mb"]
    naive_growth = (
        large["naive_read_whole_window"]["peak_rss_mb"] / small["naive_read_whole_window"]["peak_rss_mb"]
    )
    assert check_growth < 1.1, results
    assert naive_growth > check_growth + 0.1, results
    assert results["summary"]["peak_rss_ratio_largest_to_smallest"] == round(check_growth, 2)
