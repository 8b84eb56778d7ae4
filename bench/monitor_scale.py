"""Monitor scale benchmark: monitor_pipeline's drift check on a window of up to 10 million predictions
(MariaDB).

One scratch database grows through the sizes. Its first rows are real log lines in the API's format, loaded
by the real loader; the rest are copies of them made inside the server (`INSERT ... SELECT` over MariaDB's
`seq_1_to_N` tables: each copy gets its own key and answer time), so 10 million rows take minutes, not hours.
At each size, `check_drift` (count per version in SQL, a seeded sample of DRIFT_SAMPLE_ROWS, the statistics,
the report) runs in a fresh process, so its peak RSS is its own; memory is bounded when that stops growing
with the rows. Beside it, in the same run: `ORDER BY RAND() LIMIT n` (the textbook sample: it sorts the
whole window) and the naive read (every row of the window into one DataFrame, as monitor_pipeline did
before) up to a size. Results go to bench/results/monitor_scale.json.

    make bench         # or: python bench/monitor_scale.py --rows 100000,1000000 --sample-rows 10000
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / folder) for folder in ("contract", "airflow/include", "scripts")]

from prediction_logs import records, shifted, write_log  # noqa: E402
from provenance import provenance  # noqa: E402
from scratch_database import scratch_database  # noqa: E402

from penguins_pipeline.core import store  # noqa: E402
from penguins_pipeline.core.schema import FEATURES, TARGET  # noqa: E402
from penguins_pipeline.core.settings import PipelineSettings  # noqa: E402
from penguins_pipeline.monitoring import predictions_log  # noqa: E402

RESULTS = REPO / "bench" / "results" / "monitor_scale.json"
MYSQL_SERVER = os.environ.get("BENCH_MYSQL_SERVER_URL", "mysql+pymysql://root@127.0.0.1:3306")
BASE_ROWS = 20_000
COPIES_PER_STATEMENT = 50  # a million rows per INSERT ... SELECT at the default BASE_ROWS
BASE_TABLE = "bench_base_predictions"
RUN_ID = "bench__monitor_scale"


def make_version(artifacts_dir: Path) -> str:
    """A real model version (the drift check compares with its training split)."""
    import palmerpenguins

    from penguins_pipeline.core.schema import DATA_COLUMNS
    from penguins_pipeline.training import artifacts
    from penguins_pipeline.training.train import train_and_write

    clean = palmerpenguins.load_penguins().dropna()[DATA_COLUMNS].reset_index(drop=True)
    version = train_and_write(clean, artifacts_dir, PipelineSettings(artifacts_dir=artifacts_dir, cv_folds=2))
    artifacts.promote(artifacts_dir, version)
    return version


def load_base(url: str, version: str, work: Path) -> None:
    """BASE_ROWS predictions (flipper lengths moved by one standard deviation: a drifted window) as the API
    logs them, through the real loader; then kept aside as the template of every copy."""
    import palmerpenguins

    clean = palmerpenguins.load_penguins().dropna().reset_index(drop=True)
    rows = records(
        shifted(clean, BASE_ROWS, 1, flipper_length_mm=1.0), version, spacing=timedelta(milliseconds=10)
    )
    write_log(work / "predictions", rows, datetime.now(UTC) - timedelta(hours=1), 1)
    engine = store.make_engine(url)
    try:
        predictions_log.load_folder(engine, work / "predictions")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE TABLE {BASE_TABLE} AS SELECT * FROM {predictions_log.PREDICTIONS_TABLE}"
            )
    finally:
        engine.dispose()


def grow(url: str, rows: int, have: int) -> int:
    """Copies of the base rows until the table holds `rows` (a multiple of BASE_ROWS); returns its count. Copy
    k suffixes every text key column with "-k" and answers k seconds earlier."""
    engine = store.make_engine(url)
    table = predictions_log.predictions_table()
    base = sa.table(BASE_TABLE, *(sa.column(column.name) for column in table.columns))
    try:
        for first in range(have // BASE_ROWS, rows // BASE_ROWS, COPIES_PER_STATEMENT):
            last = min(first + COPIES_PER_STATEMENT, rows // BASE_ROWS) - 1
            copy = sa.table(f"seq_{first}_to_{last}", sa.column("seq"))
            values = []
            for column in table.columns:
                value: Any = base.c[column.name]
                if column.primary_key and isinstance(column.type, sa.String):
                    value = sa.func.concat(value, "-", copy.c.seq)
                elif column.name == "time":
                    value = sa.func.timestampadd(sa.literal_column("SECOND"), -copy.c.seq, value)
                values.append(value)
            select = sa.select(*values).select_from(base.join(copy, sa.true()))
            with engine.begin() as conn:
                conn.execute(table.insert().from_select([c.name for c in table.columns], select))
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def check_here(url: str, artifacts_dir: str, sample_rows: int) -> dict[str, Any]:
    """monitor_pipeline's check_drift step, as its task runs it (meant to be a fresh process)."""
    import pandas  # noqa: F401 - imported first, so the RSS of the libraries is part of the reference
    import scipy.stats  # noqa: F401

    from penguins_pipeline.monitoring import steps as monitor_steps

    libraries_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    settings = PipelineSettings(
        penguins_db_url=url, artifacts_dir=artifacts_dir, drift_sample_rows=sample_rows
    )
    start = time.perf_counter()
    checked = monitor_steps.check_drift(settings, RUN_ID)
    seconds = time.perf_counter() - start
    report = json.loads((Path(checked["report"]) / "drift.json").read_text())
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "libraries_rss_mb": round(libraries_mb, 1),
        "n_predictions": report["n_predictions"],
        "n_sampled": report["n_sampled"],
        "drifted_features": report["drifted_features"],
        "flipper_ks_statistic": round(report["features"]["flipper_length_mm"]["statistic"], 4),
        "flipper_psi": round(report["features"]["flipper_length_mm"]["psi"], 4),
    }


def naive_here(url: str) -> dict[str, Any]:
    """The window read whole into one DataFrame, as monitor_pipeline did before it sampled."""
    import pandas as pd

    libraries_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine = store.make_engine(url)
    table = predictions_log.predictions_table()
    columns = [table.c[name] for name in ("time", "model_version", *FEATURES, TARGET)]
    start = time.perf_counter()
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(sa.select(*columns).order_by(table.c.time)).all())
    seconds = time.perf_counter() - start
    engine.dispose()
    return {
        "rows": len(frame),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "libraries_rss_mb": round(libraries_mb, 1),
    }


def order_by_rand_seconds(url: str, sample_rows: int) -> float:
    """`ORDER BY RAND(seed) LIMIT n` over the window: the sample the server must sort the window for."""
    engine = store.make_engine(url)
    table = predictions_log.predictions_table()
    query = (
        sa.select(*(table.c[name] for name in (*FEATURES, TARGET)))
        .order_by(sa.func.rand(42))
        .limit(sample_rows)
    )
    try:
        start = time.perf_counter()
        with engine.connect() as conn:
            conn.execute(query).all()
        return round(time.perf_counter() - start, 2)
    finally:
        engine.dispose()


def in_fresh_process(*args: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def run(sizes: list[int], sample_rows: int, naive_max: int, order_by_rand_max: int) -> dict[str, Any]:
    runs = []
    with (
        tempfile.TemporaryDirectory(prefix="penguins-bench-") as work,
        scratch_database(MYSQL_SERVER, "penguins_bench") as url,
    ):
        artifacts_dir = Path(work) / "artifacts"
        load_base(url, make_version(artifacts_dir), Path(work))
        have = BASE_ROWS
        for rows in sizes:
            start = time.perf_counter()
            have = grow(url, rows, have)
            entry: dict[str, Any] = {"rows": have, "fill_seconds": round(time.perf_counter() - start, 1)}
            load_before = os.getloadavg()[0]
            entry["check_drift"] = in_fresh_process("check", url, str(artifacts_dir), str(sample_rows))
            if have <= order_by_rand_max:
                entry["order_by_rand_seconds"] = order_by_rand_seconds(url, sample_rows)
            if have <= naive_max:
                entry["naive_read_whole_window"] = in_fresh_process("naive", url)
            entry["load_avg_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
            runs.append(entry)
            print_row(entry)
    smallest, largest = runs[0]["check_drift"], runs[-1]["check_drift"]
    summary = {
        "largest_rows": runs[-1]["rows"],
        "largest_check_drift_seconds": largest["seconds"],
        "largest_peak_rss_mb": largest["peak_rss_mb"],
        "peak_rss_ratio_largest_to_smallest": round(largest["peak_rss_mb"] / smallest["peak_rss_mb"], 2),
        "rows_ratio_largest_to_smallest": round(runs[-1]["rows"] / runs[0]["rows"], 1),
    }
    return {"sample_rows": sample_rows, "base_rows": BASE_ROWS, "runs": runs, "summary": summary}


def print_row(entry: dict[str, Any]) -> None:
    check = entry["check_drift"]
    extra = (
        f"  ORDER BY RAND() {entry['order_by_rand_seconds']:.1f} s"
        if "order_by_rand_seconds" in entry
        else ""
    )
    if "naive_read_whole_window" in entry:
        extra += f"  naive read peak RSS {entry['naive_read_whole_window']['peak_rss_mb']:.0f} MB"
    print(
        f"{entry['rows']:>11,} rows (filled in {entry['fill_seconds']:.0f} s)  "
        f"check_drift {check['seconds']:.1f} s  peak RSS {check['peak_rss_mb']:.0f} MB  "
        f"sampled {check['n_sampled']:,}{extra}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="100000,1000000,10000000", help="comma-separated window sizes")
    parser.add_argument("--sample-rows", type=int, default=PipelineSettings().drift_sample_rows)
    parser.add_argument("--naive-max", type=int, default=1_000_000, help="largest size read the naive way")
    parser.add_argument(
        "--order-by-rand-max", type=int, default=1_000_000, help="largest size sorted by RAND()"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"default: {RESULTS.relative_to(REPO)}")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, url, *rest = args.one
        print(json.dumps(check_here(url, rest[0], int(rest[1])) if kind == "check" else naive_here(url)))
        return
    sizes = sorted(int(size) // BASE_ROWS * BASE_ROWS for size in args.rows.split(","))
    figures = run(sizes, args.sample_rows, args.naive_max, args.order_by_rand_max)
    results = {**provenance(), "store": "mariadb", **figures}
    print(json.dumps(results["summary"], indent=2))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    partial = args.results.with_suffix(".json.tmp")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(args.results)


if __name__ == "__main__":
    main()
