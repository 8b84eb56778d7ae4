"""Pipeline scale benchmark: the pipeline's steps on synthetic penguins at growing sizes, per data store.

Each measurement runs in a fresh process on a fresh database, so its peak RSS is its own. Stage "data": the
five steps of data_pipeline (ingest, store_raw, clean, store_clean, validate) as the DAG runs them; the
baseline, in the same run, is the naive way (pandas `to_sql` then `read_sql` of the same rows through the
same driver), so the speed-up is a ratio. Stage "train": train_pipeline's `train` and `verify` steps on the
table data_pipeline filled; its baseline is the same training with every tree fit on the whole training split
(scikit-learn's default, no MAX_SAMPLES_PER_TREE cap). Memory is bounded when the peak RSS stops growing
with the rows.
A stage is one function `<stage>_stage(url, rows) -> dict`; results go to bench/results/pipeline_scale.json,
one key per stage (running one stage keeps the others' results).

    make bench                      # or: python bench/pipeline_scale.py --stage data --rows 10000,100000
"""

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from provenance import provenance

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "pipeline_scale.json"
# The MariaDB/MySQL server the benchmark creates its throw-away databases on.
MYSQL_SERVER = os.environ.get("BENCH_MYSQL_SERVER_URL", "mysql+pymysql://root@127.0.0.1:3306")
TARGET_ROWS_PER_S = 50_000
BASELINE_ROWS = 100_000


def data_stage(url: str, rows: int) -> dict[str, Any]:
    """The five data_pipeline steps on `rows` synthetic penguins, timed one by one."""
    from penguins_pipeline.core.settings import PipelineSettings
    from penguins_pipeline.data import steps as data_steps

    settings = PipelineSettings(penguins_db_url=url, penguins_source=f"synthetic:{rows}")
    run_id = "bench"
    steps: dict[str, float] = {}

    def timed(name: str, step: Callable[..., Any], *args: object) -> Any:
        start = time.perf_counter()
        result = step(settings, *args)
        steps[name] = round(time.perf_counter() - start, 3)
        return result

    ingested = timed("ingest", data_steps.ingest, run_id)
    timed("store_raw", data_steps.store_raw, ingested)
    cleaned = timed("clean", data_steps.clean, run_id)
    stored = timed("store_clean", data_steps.store_clean, cleaned)
    validated = timed("validate", data_steps.validate, stored, run_id)
    seconds = sum(steps.values())
    return {
        "rows": rows,
        "clean_rows": validated["clean_rows"],
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "steps_seconds": steps,
    }


def naive_stage(url: str, rows: int) -> dict[str, Any]:
    """Baseline: the same work (raw rows in, read back in order, cleaned, clean rows in) through pandas'
    generic `to_sql` and `read_sql`, as a straightforward implementation would do it."""
    import pandas as pd

    from penguins_pipeline.core.bulk import typed
    from penguins_pipeline.core.schema import ROW_KEY
    from penguins_pipeline.core.store import make_engine, raw_table
    from penguins_pipeline.data.clean import SeenRows, clean_chunk
    from penguins_pipeline.data.sources import numbered, open_source

    engine = make_engine(url)
    start = time.perf_counter()
    for chunk in numbered(open_source(f"synthetic:{rows}", 50_000), ROW_KEY):
        chunk.to_sql("naive_raw", engine, if_exists="append", index=False, chunksize=5_000)
    seen, clean_rows = SeenRows(), 0
    query = f"SELECT * FROM naive_raw ORDER BY {ROW_KEY}"
    for raw in pd.read_sql(query, engine, chunksize=50_000):
        kept, _ = clean_chunk(typed(raw, raw_table("naive_raw")), seen)
        kept.to_sql("naive_clean", engine, if_exists="append", index=False, chunksize=5_000)
        clean_rows += len(kept)
    seconds = time.perf_counter() - start
    engine.dispose()
    return {
        "rows": rows,
        "clean_rows": clean_rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
    }


def train_stage(url: str, rows: int, uncapped: bool = False) -> dict[str, Any]:
    """data_pipeline fills the store (untimed), then train_pipeline's `train` and `verify` steps as the DAG
    runs them (timed): read penguins_clean, split, fit, held-out metrics, CV, stage the version, reload it."""
    from penguins_pipeline.core.settings import PipelineSettings
    from penguins_pipeline.training import steps as train_steps

    data_stage(url, rows)
    filled_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(prefix="penguins-bench-") as artifacts_dir:
        # Uncapped: every tree is fit on a bootstrap of the whole training split (scikit-learn's default).
        cap: dict[str, Any] = {"max_samples_per_tree": 2**62} if uncapped else {}
        settings = PipelineSettings(penguins_db_url=url, artifacts_dir=artifacts_dir, **cap)
        start = time.perf_counter()
        staged = train_steps.train(settings)
        train_steps.verify(settings, staged)
        seconds = time.perf_counter() - start
        model_bytes = (Path(staged["staging_dir"]) / "model.joblib").stat().st_size
        manifest = json.loads((Path(staged["staging_dir"]) / "manifest.json").read_text())
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "rows_train": manifest["data"]["rows_train"],
        "rows_test": manifest["data"]["rows_test"],
        "accuracy": staged["metrics"]["accuracy"],
        "cv_accuracy_mean": round(staged["metrics"]["cv"]["accuracy_mean"], 5),
        "model_mb": round(model_bytes / 1e6, 2),
        "peak_rss_before_training_mb": round(filled_mb, 1),
    }


def serve_stage(url: str, rows: int, requests: int = 2000) -> dict[str, Any]:
    """data_pipeline and train_pipeline's steps fill the store and promote a version (untimed); then the API,
    started as users start it (`python -m app`), loads it (timed: process start to the first answered
    /predict; its RSS) and answers /predict, the 5 neighbours searched over the whole training split
    (latency of `requests` sequential calls over keep-alive, rotating over real penguins)."""
    import httpx
    import psutil

    from penguins_pipeline.core.settings import PipelineSettings
    from penguins_pipeline.training import steps as train_steps

    sys.path[:0] = [str(REPO / "api"), str(REPO / "scripts")]  # what bench/serving.py imports
    from serving import free_port, real_penguins, start, wait_for_200

    data_stage(url, rows)
    with tempfile.TemporaryDirectory(prefix="penguins-bench-") as artifacts_dir:
        settings = PipelineSettings(penguins_db_url=url, artifacts_dir=artifacts_dir, api_url="")
        staged = train_steps.train(settings)
        train_steps.verify(settings, staged)
        train_steps.promote(settings, staged)
        penguins, port = real_penguins(64), free_port()
        env = {
            "PYTHONPATH": f"{REPO / 'api'}{os.pathsep}{REPO / 'contract'}",
            "ARTIFACTS_DIR": artifacts_dir,
            "API_HOST": "127.0.0.1",
        }
        env |= {"API_PORT": str(port), "API_ACCESS_LOG": "false", "API_LOG_LEVEL": "warning"}
        server = start([sys.executable, "-m", "app"], env, Path(artifacts_dir) / "api.log")
        try:
            predict = f"http://127.0.0.1:{port}/predict"
            load_seconds = wait_for_200(predict, penguins[0], server, timeout=600)
            latencies = []
            with httpx.Client(timeout=60) as client:
                for i in range(requests):
                    begin = time.perf_counter()
                    answer = client.post(predict, json=penguins[i % len(penguins)])
                    latencies.append(time.perf_counter() - begin)
                    assert answer.status_code == 200 and len(answer.json()["neighbors"]) == 5, answer.text
            server_rss = psutil.Process(server.pid).memory_info().rss
            rows_train = json.loads(httpx.get(f"http://127.0.0.1:{port}/model").text)["data"]["rows_train"]
        finally:
            server.terminate()
            server.wait(timeout=60)
    latencies.sort()
    return {
        "rows": rows,
        "seconds": round(load_seconds, 3),
        "rows_per_s": round(rows / load_seconds),
        "neighbour_rows": rows_train,
        "api_load_seconds": round(load_seconds, 3),
        "api_rss_mb": round(server_rss / 2**20, 1),
        "predict_requests": requests,
        "predict_p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "predict_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
    }


def scaling(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Cost growth between consecutive sizes of one store: each figure's ratio beside the rows' ratio."""
    growth = {}
    ordered = sorted(runs, key=lambda run: run["rows"])
    for small, large in itertools.pairwise(ordered):
        figures = [k for k in ("seconds", "peak_rss_mb", "api_rss_mb", "predict_p99_ms") if k in small]
        ratios = {f"{k}_x": round(large[k] / small[k], 2) for k in figures if small[k]}
        rows_x = large["rows"] / small["rows"]
        growth[f"{small['rows']}->{large['rows']}"] = {
            "rows_x": round(rows_x, 2),
            **ratios,
            "at_most_linear": all(ratio <= rows_x * 1.1 for ratio in ratios.values()),
        }
    return growth


STAGES: dict[str, Callable[[str, int], dict[str, Any]]] = {
    "data": data_stage,
    "train": train_stage,
    "serve": serve_stage,
}
BASELINES: dict[str, Callable[[str, int], dict[str, Any]]] = {
    "data": naive_stage,
    "train": lambda url, rows: train_stage(url, rows, uncapped=True),
}


@contextmanager
def fresh_database(store: str) -> Iterator[str]:
    """A new empty data store of kind `store` ("mariadb" or "sqlite"), removed afterwards."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="penguins-bench-") as tmp:
            yield f"sqlite:///{tmp}/penguins.db"
        return
    sys.path.insert(0, str(REPO / "scripts"))  # the tests' scratch databases, made the same way
    from scratch_database import scratch_database

    with scratch_database(MYSQL_SERVER, "penguins_bench") as url:
        yield url


def measure_here(stage: str, store: str, rows: int, baseline: bool) -> dict[str, Any]:
    """One measurement in this process (meant to be a fresh one); adds the process' peak RSS."""
    import pandas  # noqa: F401 - imported first, so the RSS of the libraries is part of the reference
    import sqlalchemy  # noqa: F401

    libraries_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The machine is shared: its load and this process' own CPU time say how much of the wall time was ours.
    load_before, cpu = os.getloadavg()[0], time.process_time()
    with fresh_database(store) as url:
        result = (BASELINES if baseline else STAGES)[stage](url, rows)
    cpu = time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "store": store,
        **result,
        "peak_rss_mb": round(peak_mb, 1),
        "libraries_rss_mb": round(libraries_mb, 1),
        "process_cpu_s": round(cpu, 2),
        "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }


def measure(stage: str, store: str, rows: int, baseline: bool = False) -> dict[str, Any]:
    """`measure_here` in a fresh Python process."""
    command = [sys.executable, __file__, "--one", stage, store, str(rows)] + (
        ["--baseline"] if baseline else []
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO / f) for f in ("contract", "airflow/include", "scripts")),
        # What is measured is the pipeline's own work: no run is recorded in MLflow.
        "MLFLOW_TRACKING_URI": "",
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def run_stage(stage: str, stores: list[str], sizes: list[int]) -> dict[str, Any]:
    runs = []
    for store in stores:
        for rows in sizes:
            runs.append(measure(stage, store, rows))
            print_row(stage, runs[-1])
    baselines = []
    if stage in BASELINES:
        for store in stores:
            baselines.append(measure(stage, store, BASELINE_ROWS, baseline=True))
            print_row(f"{stage} (naive)", baselines[-1])
    summary: dict[str, Any] = {}
    for store in stores:
        mine = [run for run in runs if run["store"] == store]
        largest, smallest = max(mine, key=lambda run: run["rows"]), min(mine, key=lambda run: run["rows"])
        entry = {
            "largest_rows": largest["rows"],
            "largest_rows_per_s": largest["rows_per_s"],
            "peak_rss_ratio_largest_to_smallest": round(largest["peak_rss_mb"] / smallest["peak_rss_mb"], 2),
        }
        if stage == "data":
            entry["meets_50k_rows_per_s"] = largest["rows_per_s"] >= TARGET_ROWS_PER_S
        entry["scaling"] = scaling(mine)
        naive = next((run for run in baselines if run["store"] == store), None)
        same_size = next((run for run in mine if run["rows"] == BASELINE_ROWS), None)
        if naive and same_size:
            entry["speedup_vs_naive_at_100k"] = round(same_size["rows_per_s"] / naive["rows_per_s"], 2)
        summary[store] = entry
    return {"runs": runs, "baseline_naive": baselines, "summary": summary}


def print_row(label: str, run: dict[str, Any]) -> None:
    print(
        f"{label:<14} {run['store']:<8} {run['rows']:>9,} rows {run['seconds']:>8.2f} s "
        f"{run['rows_per_s']:>9,} rows/s  peak RSS {run['peak_rss_mb']:>7.1f} MB  "
        f"CPU {run['process_cpu_s']:>6.1f} s  load {run['load_avg_1m'][0]:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", choices=sorted(STAGES), action="append", help="default: every stage")
    parser.add_argument("--stores", default="mariadb,sqlite", help="comma-separated: mariadb, sqlite")
    parser.add_argument("--rows", default="10000,100000,1000000", help="comma-separated sizes")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"default: {RESULTS.relative_to(REPO)}")
    parser.add_argument("--one", nargs=3, metavar=("STAGE", "STORE", "ROWS"), help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        stage, store, rows = args.one
        print(json.dumps(measure_here(stage, store, int(rows), args.baseline)))
        return
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    for stage in args.stage or sorted(STAGES):
        stores, sizes = args.stores.split(","), [int(size) for size in args.rows.split(",")]
        measured = run_stage(stage, stores, sizes)
        results[stage] = {**provenance(), **measured}  # each stage is measured (and rerun) on its own
        print(json.dumps({stage: results[stage]["summary"]}, indent=2))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    partial = args.results.with_suffix(".json.tmp")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(args.results)


if __name__ == "__main__":
    main()
