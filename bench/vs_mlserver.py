"""This API against MLServer serving the same model, side by side in one run.

Four endpoints: this API's `POST /predict`, its Open Inference Protocol V2 `POST /v2/models/penguins/infer`,
and MLServer's V2 infer with its scikit-learn runtime in two configurations: its defaults, and its adaptive
batching (`max_batch_size`, `max_batch_time` in model-settings.json), which a user serving many small requests
turns on. MLServer serves this project's version re-dumped as one scikit-learn Pipeline (preprocessor, then
forest), asked for `predict_proba`; MLServer (pinned below) is installed into a throw-away venv under .local/
(reused when present), never a project dependency.

Each round starts each server alone on the machine in turn (the order rotates), measures its cold start
(process start to the first 200 of an inference request), loads it with `wrk` (16 connections, then 1) with
bodies rotating over real penguins, times a 1,000-penguin batch, reads the RSS of its whole process tree, and
stops it. Each figure is the median over rounds, each ratio the median of the per-round ratios: these shared
machines drift by tens of percent within a minute. Each ratio is taken against the MLServer configuration
whose median is better on that measure, and the results name it. All servers' answers on the same penguins
are compared (species equal, largest difference of probabilities). Writes bench/results/vs_mlserver.json,
prints a table.

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
from functools import partial
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import psutil
from bench_tables import vs_mlserver as vs_mlserver_tables
from free_port import free_port
from provenance import provenance
from serving import (
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
# What each MLServer configuration adds to model-settings.json: nothing (its defaults), and the adaptive
# batching that serves many small requests best on this kind of machine (tried as a user would).
MLSERVER_CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "mlserver": {},
    "mlserver_batching": {"max_batch_size": 16, "max_batch_time": 0.002},
}
# Which way is better for each measure a ratio is taken of: more requests per second, less of the others.
HIGHER_IS_BETTER = {"requests_per_second": True, "batch_ms": False, "cold_start_s": False, "rss_mb": False}
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


def configure_mlserver(folder: Path, port: int, configuration: str) -> None:
    """MLServer's two settings files in `folder`: the server's, and the model's as `configuration` says."""
    settings = MLSERVER_SETTINGS | {"http_port": port, "grpc_port": free_port()}
    (folder / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    } | MLSERVER_CONFIGURATIONS[configuration]
    (folder / "model-settings.json").write_text(json.dumps(model))


def start_mlserver(port: int, folder: Path, log: Path, configuration: str) -> subprocess.Popen:
    """MLServer serving `folder`/model.joblib as `penguins` in one process, as `configuration` says."""
    configure_mlserver(folder, port, configuration)
    return start([str(VENV / "bin" / "mlserver"), "start", str(folder)], {}, log)


def tree_rss_mb(process: subprocess.Popen) -> float:
    """RSS of the server and every process it started."""
    root = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in (root, *root.children(recursive=True))) / 2**20


def probabilities_of(endpoint: str, answer: dict[str, Any], classes: list[str]) -> np.ndarray:
    """Rows of probabilities, columns in `classes` order, from any of the endpoints' answers."""
    if endpoint == "predict":
        rows = answer.get("predictions", [answer])
        return np.array([[row["probabilities"][c] for c in classes] for row in rows])
    outputs = {output["name"]: output for output in answer["outputs"]}
    output = outputs["predict_proba" if endpoint in MLSERVER_CONFIGURATIONS else "probabilities"]
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
    """One of the four: where it answers, the rotating bodies wrk sends, and how a batch is asked."""

    name: str
    path: str
    bodies: list[dict[str, Any]]
    batch: Callable[[list[dict[str, Any]]], dict[str, Any]]

    @property
    def batch_path(self) -> str:
        return "/predict/batch" if self.name == "predict" else self.path


def endpoints(penguins: list[dict[str, Any]]) -> dict[str, Endpoint]:
    """This API's two, and one per MLServer configuration (the same requests)."""
    return {
        "predict": Endpoint("predict", "/predict", penguins, lambda batch: {"instances": batch}),
        "v2": Endpoint("v2", V2_PATH, [v2_body([p]) for p in penguins], v2_body),
    } | {
        name: Endpoint(name, V2_PATH, [mlserver_body([p]) for p in penguins], mlserver_body)
        for name in MLSERVER_CONFIGURATIONS
    }


def session(
    process: subprocess.Popen, port: int, served: list[Endpoint], batch: list[dict[str, Any]], args: Any
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One server's turn: cold start, wrk at `args.connections` then at 1 connection on each of its endpoints,
    the batch, the answers to compare, then the RSS. The caller stops the server."""
    base = f"http://127.0.0.1:{port}"
    cold_start = wait_for_200(base + served[0].path, served[0].bodies[0], process, args.start_timeout)
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
    """Every other endpoint in `answers` (this API's, MLServer batching) against MLServer with its defaults on
    the same penguins: the species must be equal."""

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
    """Medians over rounds; each ratio the median of this API's figure over an MLServer configuration's in the
    same round, against each configuration and against the better one for that measure (by their medians)."""

    def median(get: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(get(r) for r in rounds)

    served = {"predict": "api", "v2": "api"} | {name: name for name in MLSERVER_CONFIGURATIONS}
    keys = list(rounds[0]["api"]["endpoints"]["predict"])
    processes = {
        process: {key: median(lambda r: r[process][key]) for key in ("cold_start_s", "rss_mb")}  # noqa: B023
        for process in ("api", *MLSERVER_CONFIGURATIONS)
    }
    figures = {
        name: {key: median(lambda r: r[process]["endpoints"][name][key]) for key in keys}  # noqa: B023
        for name, process in served.items()
    }
    # ratio name -> this API's endpoint (None: the process) and the measure.
    measures: dict[str, tuple[str | None, str]] = {
        "v2_requests_per_second_over_mlserver": ("v2", "requests_per_second"),
        "predict_requests_per_second_over_mlserver": ("predict", "requests_per_second"),
        "v2_batch_over_mlserver": ("v2", "batch_ms"),
        "predict_batch_over_mlserver": ("predict", "batch_ms"),
        "cold_start_over_mlserver": (None, "cold_start_s"),
        "rss_over_mlserver": (None, "rss_mb"),
    }

    def figure(turn: dict[str, Any], endpoint: str | None, measure: str) -> float:
        return turn[measure] if endpoint is None else turn["endpoints"][endpoint][measure]

    def ratio(endpoint: str | None, measure: str, configuration: str) -> float:
        theirs = None if endpoint is None else configuration  # MLServer's one endpoint is named after it
        return statistics.median(
            figure(r["api"], endpoint, measure) / figure(r[configuration], theirs, measure) for r in rounds
        )

    def better(measure: str) -> str:
        median_of = {
            name: figures[name][measure] if measure in figures[name] else processes[name][measure]
            for name in MLSERVER_CONFIGURATIONS
        }
        pick = max if HIGHER_IS_BETTER[measure] else min
        return pick(median_of, key=median_of.__getitem__)

    by_configuration = {
        configuration: {name: ratio(*how, configuration) for name, how in measures.items()}
        for configuration in MLSERVER_CONFIGURATIONS
    }
    against = {name: better(measure) for name, (_, measure) in measures.items()}
    return {
        "processes": processes,
        "endpoints": figures,
        "ratios": {name: by_configuration[against[name]][name] for name in measures},
        "ratios_against": against,
        "ratios_by_configuration": by_configuration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=4, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="turns of each server (at least 2)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch-repeats", type=int, default=9, help="timed batch requests per turn")
    # A server starts in seconds on an idle machine, in minutes on a shared one under heavy load.
    parser.add_argument("--start-timeout", type=float, default=600, help="seconds a server may take to start")
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
        } | {
            name: (
                partial(start_mlserver, folder=work / MODEL, log=work / f"{name}.log", configuration=name),
                [known[name]],
            )
            for name in MLSERVER_CONFIGURATIONS
        }
        rounds: list[dict[str, Any]] = []
        answers: dict[str, dict[str, Any]] = {}
        names = sorted(servers)
        for turn in range(max(args.rounds, 2)):
            rounds.append({})
            shift = turn % len(names)  # each goes first in its turn
            for name in names[shift:] + names[:shift]:
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
            "setup": {"wrk_seconds": args.seconds, "rounds": len(rounds), "connections": args.connections,
                      "bodies": len(penguins), "batch_penguins": BATCH, "batch_repeats": args.batch_repeats,
                      "compared_one_by_one": COMPARED, "mlserver": MLSERVER,
                      "mlserver_settings": MLSERVER_SETTINGS,
                      "mlserver_configurations": MLSERVER_CONFIGURATIONS},
            **summarize(rounds),
            "answers": compare(answers, classes),
            "rounds": rounds,
        }  # fmt: skip
    results = provenance() | results
    write_results(results, args.results, vs_mlserver_tables(results))


if __name__ == "__main__":
    main()
