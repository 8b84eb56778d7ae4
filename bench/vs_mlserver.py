"""This API against MLServer serving the same model, side by side in one run.

Three endpoints: this API's `POST /predict`, its Open Inference Protocol V2 `POST /v2/models/penguins/infer`,
and MLServer's V2 infer with its scikit-learn runtime, on this project's served version re-dumped as one
scikit-learn Pipeline (preprocessor, then forest) and asked for `predict_proba`. MLServer (pinned below) is
installed into a throw-away venv under .local/ (reused when present), never a project dependency.

Each round starts each server alone on the machine in turn (the two orders alternate), measures its cold start
(process start to the first 200 of an inference request), loads it with `wrk` (16 connections, then 1) with
bodies rotating over real penguins, times a 1,000-penguin batch, reads the RSS of its whole process tree, and
stops it. Each figure is the median over rounds, each ratio the median of the per-round ratios: these shared
machines drift by tens of percent within a minute. Both servers' answers on the same penguins are compared
(species equal, largest difference of probabilities). Writes bench/results/vs_mlserver.json, prints a table.

    make bench                     # or: python bench/vs_mlserver.py --seconds 4 --rounds 5
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import psutil
from bench_tables import vs_mlserver as vs_mlserver_tables
from free_port import free_port
from serving import (
    machine,
    real_penguins,
    require_wrk,
    run_wrk,
    scratch,
    start,
    start_api,
    timed,
    train_version,
    wait_for_200,
    write_results,
    wrk_script,
)
from sklearn.pipeline import Pipeline

from penguins_contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES, version_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "vs_mlserver.json"
VENV = ROOT / ".local" / "bench" / "mlserver-venv"
MLSERVER = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1"]
# The pickled pipeline only loads right in the scikit-learn (and numpy) it was dumped with: the venv gets the
# project's own versions of them.
SAME_AS_PROJECT = ("scikit-learn", "numpy", "joblib")
MODEL = "penguins"
V2_PATH = f"/v2/models/{MODEL}/infer"
# MLServer's default parallel inference workers crash with the uvloop of today (MLServer issue #2286):
# inference runs in the server's own process, as this API's does. `debug: false` turns its access log off.
MLSERVER_SETTINGS = {"parallel_workers": 0, "debug": False, "metrics_endpoint": None, "host": "127.0.0.1"}
BATCH = 1000
COMPARED = 20


def mlserver_venv() -> None:
    """A venv holding the pinned MLServer, created (under a minute) unless it holds these very pins."""
    pins = [*MLSERVER, *(f"{name}=={installed_version(name)}" for name in SAME_AS_PROJECT)]
    stamp = VENV / "bench-pins.txt"
    if not (stamp.exists() and stamp.read_text().split() == pins):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *pins], check=True)
        stamp.write_text("\n".join(pins) + "\n")


def dump_pipeline(artifacts_dir: Path, version: str, folder: Path) -> list[str]:
    """The served version as MLServer's runtime wants it: one Pipeline in `folder`/model.joblib. Returns the
    species in the order of predict_proba's columns (the label encoder's classes)."""
    # The pickled scikit-learn objects themselves (the API reads only serving.npz), as a user of MLServer has.
    files = version_dir(artifacts_dir, version)
    pipeline = Pipeline(
        [
            ("preprocessor", joblib.load(files / "preprocessor.joblib")),
            ("model", joblib.load(files / "model.joblib")),
        ]
    )
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, folder / "model.joblib")
    return [str(species) for species in joblib.load(files / "label_encoder.joblib").classes_]


def v2_body(penguins: list[dict[str, Any]]) -> dict[str, Any]:
    """An Open Inference Protocol V2 request: one input per feature, shape [n]."""
    numbers = [
        {"name": name, "shape": [len(penguins)], "datatype": "FP64", "data": [p[name] for p in penguins]}
        for name in NUMERIC_FEATURES
    ]
    words = [
        {"name": name, "shape": [len(penguins)], "datatype": "BYTES", "data": [p[name] for p in penguins]}
        for name in CATEGORICAL_FEATURES
    ]
    return {"inputs": numbers + words}


def mlserver_body(penguins: list[dict[str, Any]]) -> dict[str, Any]:
    """The same V2 request in the form MLServer's scikit-learn runtime needs: the pandas codec makes the named
    inputs one DataFrame (the preprocessor selects columns by name), and predict_proba is asked for."""
    return v2_body(penguins) | {"parameters": {"content_type": "pd"}, "outputs": [{"name": "predict_proba"}]}


def start_mlserver(port: int, folder: Path, log: Path) -> subprocess.Popen:
    """MLServer serving `folder`/model.joblib as `penguins`, one process."""
    settings = MLSERVER_SETTINGS | {"http_port": port, "grpc_port": free_port()}
    (folder / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (folder / "model-settings.json").write_text(json.dumps(model))
    return start([str(VENV / "bin" / "mlserver"), "start", str(folder)], {}, log)


def tree_rss_mb(process: subprocess.Popen) -> float:
    """RSS of the server and every process it started."""
    root = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in (root, *root.children(recursive=True))) / 2**20


def probabilities_of(endpoint: str, answer: dict[str, Any], classes: list[str]) -> np.ndarray:
    """Rows of probabilities, columns in `classes` order, from any of the three endpoints' answers."""
    if endpoint == "predict":
        rows = answer.get("predictions", [answer])
        return np.array([[row["probabilities"][c] for c in classes] for row in rows])
    outputs = {output["name"]: output for output in answer["outputs"]}
    output = outputs["probabilities" if endpoint == "v2" else "predict_proba"]
    return np.array(output["data"], dtype=float).reshape(output["shape"])


def species_of(
    endpoint: str, answer: dict[str, Any], probabilities: np.ndarray, classes: list[str]
) -> list[str]:
    """The species named by an answer; MLServer names none: the class of its most probable column."""
    if endpoint == "predict":
        return [row["species"] for row in answer.get("predictions", [answer])]
    if endpoint == "v2":
        return list(next(o for o in answer["outputs"] if o["name"] == "species")["data"])
    return [classes[i] for i in probabilities.argmax(axis=1)]


@dataclass(frozen=True)
class Endpoint:
    """One of the three: where it answers, the rotating bodies wrk sends, and how a batch is asked."""

    name: str
    path: str
    bodies: list[dict[str, Any]]
    batch: Callable[[list[dict[str, Any]]], dict[str, Any]]

    @property
    def batch_path(self) -> str:
        return "/predict/batch" if self.name == "predict" else self.path


def endpoints(penguins: list[dict[str, Any]]) -> dict[str, Endpoint]:
    return {
        "predict": Endpoint("predict", "/predict", penguins, lambda batch: {"instances": batch}),
        "v2": Endpoint("v2", V2_PATH, [v2_body([p]) for p in penguins], v2_body),
        "mlserver": Endpoint("mlserver", V2_PATH, [mlserver_body([p]) for p in penguins], mlserver_body),
    }


def session(
    process: subprocess.Popen, port: int, served: list[Endpoint], batch: list[dict[str, Any]], args: Any
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One server's turn: cold start, wrk at `args.connections` then at 1 connection on each of its endpoints,
    the batch, the answers to compare, then the RSS. The caller stops the server."""
    base = f"http://127.0.0.1:{port}"
    cold_start = wait_for_200(base + served[0].path, served[0].bodies[0], process)
    server = psutil.Process(process.pid)
    figures, answers = {}, {}
    with httpx.Client(base_url=base, timeout=120) as client:

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            return client.post(path, json=body).raise_for_status().json()

        for endpoint in served:
            folder = Path(tempfile.mkdtemp(prefix=f"wrk-{endpoint.name}-"))
            script = wrk_script(endpoint.bodies, folder)
            load = run_wrk(base + endpoint.path, server, script, args.connections, args.seconds)
            one = run_wrk(base + endpoint.path, server, script, 1, args.seconds)
            shutil.rmtree(folder)
            body = endpoint.batch(batch)
            seconds = timed(lambda: post(endpoint.batch_path, body), args.batch_repeats)  # noqa: B023
            figures[endpoint.name] = load | {"p50_ms_1_connection": one["p50_ms"], "batch_ms": seconds * 1e3}
            answers[endpoint.name] = {
                "singles": [post(endpoint.path, single) for single in endpoint.bodies[:COMPARED]],
                "batch": post(endpoint.batch_path, body),
            }
    return {"cold_start_s": cold_start, "rss_mb": tree_rss_mb(process), "endpoints": figures}, answers


def compare(answers: dict[str, dict[str, Any]], classes: list[str]) -> dict[str, dict[str, Any]]:
    """Each of this API's endpoints in `answers` against MLServer on the same penguins: the species must be
    equal."""

    def rows(endpoint: str) -> tuple[np.ndarray, list[str]]:
        got = [*answers[endpoint]["singles"], answers[endpoint]["batch"]]
        probabilities = [probabilities_of(endpoint, answer, classes) for answer in got]
        species = [
            s
            for answer, p in zip(got, probabilities, strict=True)
            for s in species_of(endpoint, answer, p, classes)
        ]
        return np.vstack(probabilities), species

    reference, reference_species = rows("mlserver")
    compared = {}
    for endpoint in sorted(set(answers) - {"mlserver"}):
        probabilities, species = rows(endpoint)
        wrong = sum(a != b for a, b in zip(species, reference_species, strict=True))
        if wrong:
            raise RuntimeError(f"{endpoint}: {wrong} species differ from MLServer's on the same penguins")
        compared[endpoint] = {
            "penguins": len(species),
            "species_equal": True,
            "max_abs_probability_difference": float(np.abs(probabilities - reference).max()),
        }
    return compared


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds; each ratio the median of this API's figure over MLServer's in the same round."""

    def median(get: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(get(r) for r in rounds)

    def ratio(get: Callable[[dict[str, Any]], float], endpoint: str | None = None) -> float:
        mlserver = (lambda r: get(r["endpoints"]["mlserver"])) if endpoint else (lambda r: get(r))
        api = (lambda r: get(r["endpoints"][endpoint])) if endpoint else (lambda r: get(r))
        return statistics.median(api(r["api"]) / mlserver(r["mlserver"]) for r in rounds)

    served = {"predict": "api", "v2": "api", "mlserver": "mlserver"}
    keys = list(rounds[0]["api"]["endpoints"]["predict"])
    return {
        "processes": {
            process: {key: median(lambda r: r[process][key]) for key in ("cold_start_s", "rss_mb")}  # noqa: B023
            for process in ("api", "mlserver")
        },
        "endpoints": {
            name: {key: median(lambda r: r[process]["endpoints"][name][key]) for key in keys}  # noqa: B023
            for name, process in served.items()
        },
        "ratios": {
            "v2_requests_per_second_over_mlserver": ratio(lambda e: e["requests_per_second"], "v2"),
            "predict_requests_per_second_over_mlserver": ratio(lambda e: e["requests_per_second"], "predict"),
            "v2_batch_over_mlserver": ratio(lambda e: e["batch_ms"], "v2"),
            "predict_batch_over_mlserver": ratio(lambda e: e["batch_ms"], "predict"),
            "cold_start_over_mlserver": ratio(lambda p: p["cold_start_s"]),
            "rss_over_mlserver": ratio(lambda p: p["rss_mb"]),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=4, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="turns of each server (at least 2)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch-repeats", type=int, default=9, help="timed batch requests per turn")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"default: {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    require_wrk()
    mlserver_venv()
    with scratch("bench-vs-mlserver-") as work:
        version = train_version(work / "artifacts")
        classes = dump_pipeline(work / "artifacts", version, work / MODEL)  # named as MLServer expects
        # Lower-case sex, the preprocessor's own spelling: MLServer's pipeline does no case matching.
        penguins = [penguin | {"sex": penguin["sex"].lower()} for penguin in real_penguins(64)]
        batch = [penguins[i % len(penguins)] for i in range(BATCH)]
        known = endpoints(penguins)
        servers: dict[str, tuple[Callable[[int], subprocess.Popen], list[Endpoint]]] = {
            "api": (
                lambda port: start_api(port, work / "artifacts", work / "api.log"),
                [known["predict"], known["v2"]],
            ),
            "mlserver": (
                lambda port: start_mlserver(port, work / MODEL, work / "mlserver.log"),
                [known["mlserver"]],
            ),
        }
        rounds: list[dict[str, Any]] = []
        answers: dict[str, dict[str, Any]] = {}
        for turn in range(max(args.rounds, 2)):
            rounds.append({})
            for name in sorted(servers, reverse=turn % 2 == 1):  # each goes first in every other round
                launch, served = servers[name]
                port = free_port()
                process = launch(port)
                try:
                    rounds[-1][name], got = session(process, port, served, batch, args)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                answers |= got
        results = {
            "machine": machine(),
            "setup": {"wrk_seconds": args.seconds, "rounds": len(rounds), "connections": args.connections,
                      "bodies": len(penguins), "batch_penguins": BATCH, "batch_repeats": args.batch_repeats,
                      "mlserver": MLSERVER, "mlserver_settings": MLSERVER_SETTINGS},
            **summarize(rounds),
            "answers": compare(answers, classes),
            "rounds": rounds,
        }  # fmt: skip
    write_results(results, args.results, vs_mlserver_tables(results))


if __name__ == "__main__":
    main()
