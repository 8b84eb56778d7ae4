"""Serving benchmark: /predict against a hello-world endpoint that parses the same pydantic body.

Both run as one uvicorn worker (no access log, same flags), loaded in turn by Debian's `wrk` on loopback,
alternating servers so that both see the same background load; only ratios from one run are compared, each
the median of the per-round ratios (a round runs the two servers back to back: these shared machines drift
by tens of percent within a minute).
Bodies rotate over real penguins, so nothing can be answered from a cache. The API logs every prediction
(app/prediction_log.py, its default): a third server with PREDICTIONS_LOG=false joins the throughput
rounds, and the 10,000-penguin batch over HTTP runs on both in turns, to measure what the log costs.
Also: a 10,000-penguin batch in-process, the compiled forest walk against scikit-learn's predict_proba on
the same rows, cold start (process start to the first 200 of /predict), RSS, and the nearest-neighbour
search over a 1,000,000-row training split. Writes bench/results/serving.json, prints a table.

    make bench                     # or: python bench/serving.py --seconds 8 --rounds 10
"""

import argparse
import gc
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import palmerpenguins
import pandas as pd
import psutil
from bench_tables import serving as serving_tables
from fastapi import FastAPI
from free_port import free_port
from provenance import provenance

from app.loader import load_version
from app.neighbors import NeighborIndex
from app.predictor import N_NEIGHBORS, Predictor
from app.schemas import PenguinFeatures
from penguins_contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "serving.json"
FEATURES = [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]
# What both servers import: the API with the artifact contract, and this module (for hello_app) with what it
# imports from scripts/.
SERVER_PATH = os.pathsep.join(str(ROOT / folder) for folder in ("api", "contract", "bench", "scripts"))

hello_app = FastAPI()


@hello_app.post("/predict")
async def hello(penguin: PenguinFeatures) -> dict[str, str]:
    """The baseline: FastAPI parsing and validating the same body, answering a constant."""
    return {"species": "hello"}


def wait_for_200(url: str, body: dict[str, Any], process: subprocess.Popen, timeout: float = 120) -> float:
    """Seconds from `process` start until POST `url` answers 200 (polled often: the time is the server's)."""
    start = psutil.Process(process.pid).create_time()
    while time.time() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: see its log above")
        try:
            if httpx.post(url, json=body, timeout=2).status_code == 200:
                return time.time() - start
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as output:  # the child keeps its own handle
        return subprocess.Popen(command, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT)


def start_hello(port: int, log: Path) -> subprocess.Popen:
    """The baseline server: this module's hello_app, one uvicorn worker with the API's flags."""
    return start(
        [sys.executable, "-m", "uvicorn", "serving:hello_app", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        {"PYTHONPATH": SERVER_PATH},
        log,
    )  # fmt: skip


def start_api(port: int, artifacts_dir: Path, log: Path, **settings: str) -> subprocess.Popen:
    """This API as `make api` runs it: one uvicorn worker, no access log, its prediction log on (the default)
    beside `artifacts_dir`; `settings` change any of that."""
    return start(
        [sys.executable, "-m", "app"],
        {
            "PYTHONPATH": SERVER_PATH,
            "ARTIFACTS_DIR": str(artifacts_dir),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "API_WORKERS": "1",
            "API_ACCESS_LOG": "false",
            "API_LOG_LEVEL": "warning",
            "PREDICTIONS_DIR": str(artifacts_dir.parent / "predictions"),
            **settings,
        },
        log,
    )


def wrk_script(bodies: list[dict[str, Any]], folder: Path) -> Path:
    lines = ",\n".join(f"  [[{json.dumps(body)}]]" for body in bodies)
    script = folder / "bodies.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"local bodies = {{\n{lines}\n}}\n"
        "local i = 0\nrequest = function()\n  i = i % #bodies + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[i])\nend\n"
    )
    return script


def milliseconds(text: str) -> float:
    value, unit = _match(re.fullmatch(r"([\d.]+)(us|ms|s)", text), text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _match(match: re.Match[str] | None, text: str) -> re.Match[str]:
    """`match`, or an error that shows the wrk output it was looked for in."""
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return match


def run_wrk(
    url: str, server: psutil.Process, script: Path, connections: int, seconds: int
) -> dict[str, float]:
    """wrk's numbers, plus the server's CPU time per request (barely moved by the machine's load)."""
    cpu_before = sum(server.cpu_times()[:2])
    output = subprocess.run(
        # A long timeout: wrk leaves timed-out requests out of its latencies, flattering a slow server.
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout=60s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed responses\n{output}")
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    if set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"{url}: no latency percentiles in wrk's output\n{output}")
    requests = int(_match(re.search(r"(\d+) requests in", output), output).group(1))
    if not requests:
        raise RuntimeError(f"{url}: no request answered within {seconds} s (machine overloaded?)\n{output}")
    return {
        "server_cpu_us_per_request": (sum(server.cpu_times()[:2]) - cpu_before) / requests * 1e6,
        "requests_per_second": float(_match(re.search(r"Requests/sec:\s+([\d.]+)", output), output).group(1)),
        "p50_ms": milliseconds(percentiles["50"]),
        "p99_ms": milliseconds(percentiles["99"]),
    }


def alternate(
    urls: dict[str, tuple[str, psutil.Process]], script: Path, connections: int, seconds: int, rounds: int
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    for _ in range(rounds):
        for name, (url, server) in urls.items():
            runs[name].append(run_wrk(url, server, script, connections, seconds))
    summary = {
        name: {key: statistics.median(run[key] for run in results) for key in results[0]} | {"runs": results}
        for name, results in runs.items()
    }
    return summary


def per_round_ratio(summary: dict[str, Any], key: str, over: str = "hello") -> float:
    """Median over rounds of predict's figure over `over`'s, both measured back to back in that round."""
    pairs = zip(summary["predict"]["runs"], summary[over]["runs"], strict=True)
    return statistics.median(mine[key] / theirs[key] for mine, theirs in pairs)


def batch_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/predict/batch"


def train_version(folder: Path) -> str:
    """A real version, by the pipeline's own code (imported here: the hello server imports this module)."""
    from penguins_pipeline.core.schema import DATA_COLUMNS
    from penguins_pipeline.core.settings import PipelineSettings
    from penguins_pipeline.training import artifacts
    from penguins_pipeline.training.train import train_and_write

    clean = palmerpenguins.load_penguins().dropna()[DATA_COLUMNS].reset_index(drop=True)
    version = train_and_write(clean, folder, PipelineSettings(artifacts_dir=folder))
    artifacts.promote(folder, version)
    return version


def real_penguins(count: int) -> list[dict[str, Any]]:
    frame = palmerpenguins.load_penguins().dropna(subset=FEATURES)[FEATURES].sample(count, random_state=0)
    penguins = [
        {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]
    for i, penguin in enumerate(penguins):  # the form's spelling and others: matching is case-insensitive
        penguin["sex"] = penguin["sex"].capitalize() if i % 2 else penguin["sex"]
    return penguins


def timed(function, repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    durations = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def timed_in_turns(first, second, repeat: int) -> tuple[float, float, float]:
    """Median seconds of each of two functions called in turns, and the median of second/first per turn:
    both meet the same machine speed, which drifts by tens of percent within seconds here."""
    turns = [(timed(first, 1), timed(second, 1)) for _ in range(repeat)]
    return (
        statistics.median(a for a, _ in turns),
        statistics.median(b for _, b in turns),
        statistics.median(b / a for a, b in turns),
    )


def in_fresh_process(function: Any, *args: Any) -> Any:
    """`function(*args)` in a new interpreter: the Predictor alone, as in the API's process, not beside this
    harness's HTTP clients and training leftovers (they slowed a 10,000-penguin batch by half)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def in_process(folder: Path, version: str, penguins: list[dict[str, Any]]) -> dict[str, Any]:
    loaded = load_version(folder, version)
    predictor = Predictor(loaded, near_tie_margin=0.2)
    gc.freeze()  # as the server does after loading a version
    batch = [PenguinFeatures(**penguins[i % len(penguins)]) for i in range(10_000)]
    one = batch[0]
    # The compiled forest walk against scikit-learn's predict_proba on the same 10,000 preprocessed rows.
    frame = pd.DataFrame([penguin.model_dump() for penguin in batch])[FEATURES]
    version_folder = folder / "models" / version
    rows = joblib.load(version_folder / "preprocessor.joblib").transform(
        frame.assign(sex=frame["sex"].str.lower())
    )
    model = joblib.load(version_folder / "model.joblib")
    walk, sklearn, speedup = timed_in_turns(
        lambda: predictor.forest.predict_proba(rows), lambda: model.predict_proba(rows), 9
    )
    return {
        "predict_one_us": timed(lambda: predictor.predict(one), 2000) * 1e6,
        "batch_10000_no_neighbors_ms": timed(lambda: predictor.predict_batch(batch, False), 7) * 1e3,
        "batch_10000_with_neighbors_ms": timed(lambda: predictor.predict_batch(batch, True), 3) * 1e3,
        "forest_walk_10000_ms": walk * 1e3,
        "sklearn_predict_proba_10000_ms": sklearn * 1e3,
        "sklearn_predict_proba_over_forest_walk": speedup,
    }


def million_row_neighbors(folder: Path, version: str) -> dict[str, float]:
    """The KD-tree over a 1,000,000-row training split (real rows, jittered), then single queries."""
    predictor = Predictor(load_version(folder, version), near_tie_margin=0.2)
    rng = np.random.default_rng(0)
    real = predictor.split_measures
    measures = real[rng.integers(0, len(real), 1_000_000)]
    measures = measures * rng.normal(1, 0.02, measures.shape)
    categories = predictor.split_categories[rng.integers(0, len(predictor.split_categories), 1_000_000)]
    points = predictor.encoder.encode_many(measures, categories)
    start = time.perf_counter()
    index = NeighborIndex(points, N_NEIGHBORS)
    build = time.perf_counter() - start
    queries = points[rng.integers(0, len(points), 2000)] + rng.normal(0, 0.05, (2000, points.shape[1]))
    query = timed(lambda: [index.query(q[None]) for q in queries], 3) / len(queries)
    return {"rows": 1_000_000, "build_s": build, "query_us": query * 1e6}


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A scratch folder for a benchmark's files and servers' logs, shown if the run fails, then removed."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    except Exception:
        for log in work.glob("*.log"):
            print(f"--- {log.name}\n{log.read_text()}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_results(results: dict[str, Any], path: Path, tables: str) -> None:
    """The results file, and the README's tables printed (scripts/bench_tables.py --write puts them there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(tables)
    print(f"written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=4, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=6, help="alternations of the two servers (at least 2)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"default: {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    require_wrk()

    with scratch("bench-serving-") as work:
        servers: list[subprocess.Popen] = []
        try:
            version = train_version(work / "artifacts")
            penguins = real_penguins(64)
            script = wrk_script(penguins, work)
            # First, before minutes of load slow these machines down (their CPU-time budget runs low).
            in_process_results = in_fresh_process(in_process, work / "artifacts", version, penguins)
            neighbors_1m = in_fresh_process(million_row_neighbors, work / "artifacts", version)
            hello_port, api_port, log_off_port = free_port(), free_port(), free_port()
            hello = start_hello(hello_port, work / "hello.log")
            servers.append(hello)
            # The API as configured by default (prediction log on), and the same with the log off.
            api = start_api(api_port, work / "artifacts", work / "api.log")
            servers.append(api)
            log_off = start_api(
                log_off_port, work / "artifacts", work / "api-log-off.log", PREDICTIONS_LOG="false"
            )
            servers.append(log_off)
            urls = {
                "hello": f"http://127.0.0.1:{hello_port}/predict",
                "predict": f"http://127.0.0.1:{api_port}/predict",
                "predict_log_off": f"http://127.0.0.1:{log_off_port}/predict",
            }
            cold_start = wait_for_200(urls["predict"], penguins[0], api)
            wait_for_200(urls["hello"], penguins[0], hello)
            wait_for_200(urls["predict_log_off"], penguins[0], log_off)

            targets = {
                name: (url, psutil.Process(server.pid))
                for (name, url), server in zip(urls.items(), (hello, api, log_off), strict=True)
            }
            throughput = alternate(targets, script, args.connections, args.seconds, max(args.rounds, 2))
            del targets["predict_log_off"]
            single = alternate(targets, script, 1, args.seconds, max(args.rounds, 2))
            batch_body = {"instances": [penguins[i % len(penguins)] for i in range(10_000)]}
            http_batch_log_off, http_batch, batch_log_cost = timed_in_turns(
                lambda: httpx.post(batch_url(log_off_port), json=batch_body, timeout=60).raise_for_status(),
                lambda: httpx.post(batch_url(api_port), json=batch_body, timeout=60).raise_for_status(),
                5,
            )
            rss = psutil.Process(api.pid).memory_info().rss
            results = {
                **provenance(),
                "setup": {"wrk_seconds": args.seconds, "rounds": max(args.rounds, 2),
                          "connections": args.connections, "uvicorn_workers": 1, "access_log": False,
                          "bodies": len(penguins)},
                "throughput": throughput,
                "single_connection": single,
                "ratios": {
                    "throughput_predict_over_hello": per_round_ratio(throughput, "requests_per_second"),
                    "single_connection_p50_predict_over_hello": per_round_ratio(single, "p50_ms"),
                    "server_cpu_per_request_hello_over_predict": 1
                    / per_round_ratio(throughput, "server_cpu_us_per_request"),
                    # What the prediction log costs: req/s on ÷ off (below 1: fewer), batch time on ÷ off.
                    "throughput_log_on_over_off": per_round_ratio(
                        throughput, "requests_per_second", over="predict_log_off"
                    ),
                    "server_cpu_per_request_log_on_over_off": per_round_ratio(
                        throughput, "server_cpu_us_per_request", over="predict_log_off"
                    ),
                    "http_batch_10000_log_on_over_off": batch_log_cost,
                },
                "cold_start_s": cold_start,
                "rss_mb_after_load": rss / 2**20,
                "http_batch_10000_no_neighbors_ms": http_batch * 1e3,
                "http_batch_10000_log_off_ms": http_batch_log_off * 1e3,
                "in_process": in_process_results,
                "neighbors_1m": neighbors_1m,
            }  # fmt: skip
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=15)
    write_results(results, args.results, serving_tables(results))


if __name__ == "__main__":
    main()
