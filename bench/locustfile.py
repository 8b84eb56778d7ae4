"""Users of the penguins API as Locust plays them: `make loadtest` runs this file headless, bench/loadtest.py
steps its users up under container limits, and `locust -f bench/locustfile.py` opens Locust's own UI.

It lives in bench/ beside the other load generators because it is a client of the API, never part of it, and
its reports belong with theirs (bench/results/loadtest/). Each user opens the page now and then, mostly asks
for one penguin, sometimes for a few at once or through the Open Inference Protocol (V2), and thinks between
clicks. The penguins are real ones from palmerpenguins, each measure nudged a little, so no two requests are
alike. An answer counts as failed when its status is not 2xx or its body is not a well-formed answer.

Run with the repository's `contract` and `scripts` folders on PYTHONPATH (the Makefile sets it).
"""

from __future__ import annotations

import csv
import json
import math
import random
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import FastResponse, ResponseContextManager
from locust.env import Environment
from locust.runners import WorkerRunner
from provenance import provenance

from penguins_contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES, PHYSICAL_BOUNDS

# DESIGN.md's V2 model name (the API's app.open_inference.MODEL_NAME: importing the API here would load it).
V2_INFER = "/v2/models/penguins/infer"
# How the data writes each measure: bills to a tenth of a millimetre, flippers and mass in whole units.
DECIMALS = {"bill_length_mm": 1, "bill_depth_mm": 1, "flipper_length_mm": 0, "body_mass_g": 0}
# A nudge of a real penguin's measure: within a species' spread, so the population stays the training one.
NUDGE = 0.02
BATCH_SIZES = (2, 10)
SUMMARY_SUFFIX = "_summary.json"
PERCENTILES = (0.5, 0.95, 0.99)


def real_penguins() -> list[dict[str, Any]]:
    """palmerpenguins' complete rows, from the CSV it ships. Found, not imported: importing it imports pandas,
    seconds during which Locust's clock stands still, and `--run-time` would end the run that much early."""
    spec = find_spec("palmerpenguins")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "bench/locustfile.py draws its penguins from palmerpenguins: run it with .venv's locust"
        )
    table = Path(spec.submodule_search_locations[0]) / "data" / "penguins.csv"
    with table.open(newline="") as rows:
        complete = [row for row in csv.DictReader(rows) if "NA" not in row.values()]
    return [
        {
            **{name: float(row[name]) for name in NUMERIC_FEATURES},
            **{name: row[name] for name in CATEGORICAL_FEATURES},
        }
        for row in complete
    ]


PENGUINS = real_penguins()


def draw_penguin(rng: random.Random) -> dict[str, Any]:
    """A real penguin, each measure nudged and kept inside the contract's bounds; island and sex in the case
    a person may type them (the API matches them in any case)."""
    penguin: dict[str, Any] = dict(rng.choice(PENGUINS))
    for name in NUMERIC_FEATURES:
        low, high = PHYSICAL_BOUNDS[name]
        value = min(max(penguin[name] * rng.gauss(1.0, NUDGE), low), high)
        penguin[name] = round(value, DECIMALS[name]) if DECIMALS[name] else round(value)
    for name in CATEGORICAL_FEATURES:
        penguin[name] = rng.choice((penguin[name], penguin[name].capitalize()))
    return penguin


def v2_body(penguins: list[dict[str, Any]]) -> dict[str, Any]:
    """An Open Inference Protocol request: one tensor per feature, as tritonclient or MLServer send them."""
    inputs = [
        {
            "name": name,
            "shape": [len(penguins)],
            "datatype": "FP64" if name in NUMERIC_FEATURES else "BYTES",
            "data": [penguin[name] for penguin in penguins],
        }
        for name in (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
    ]
    return {"inputs": inputs, "outputs": [{"name": "species"}, {"name": "probabilities"}]}


def prediction_problem(answer: Any) -> str | None:
    """What is wrong with one /predict answer, or None: the species must be one of its probabilities, which
    sum to 1, and the answer must carry its prediction id and model version."""
    if not isinstance(answer, dict):
        return f"not an object: {answer!r}"
    probabilities = answer.get("probabilities")
    if not isinstance(probabilities, dict) or answer.get("species") not in probabilities:
        return f"species {answer.get('species')!r} is not among the probabilities {probabilities!r}"
    if not math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-6):
        return f"probabilities sum to {sum(probabilities.values())}"
    if not answer.get("prediction_id") or not answer.get("model_version"):
        return "no prediction_id or model_version"
    return None


def v2_problem(answer: Any, count: int) -> str | None:
    """What is wrong with a V2 answer for `count` penguins, or None."""
    if not isinstance(answer, dict) or answer.get("model_name") != "penguins":
        return f"not an answer of model penguins: {answer!r}"
    outputs = {output.get("name"): output for output in answer.get("outputs", [])}
    species, probabilities = outputs.get("species"), outputs.get("probabilities")
    if species is None or probabilities is None:
        return f"outputs {sorted(map(str, outputs))} lack species or probabilities"
    if species["shape"] != [count] or len(species["data"]) != count:
        return f"species shape {species['shape']} for {count} penguins"
    rows, classes = probabilities["shape"]
    data = probabilities["data"]
    if rows != count or len(data) != rows * classes:
        return f"probabilities shape {probabilities['shape']} for {count} penguins"
    sums = [sum(data[i * classes : (i + 1) * classes]) for i in range(rows)]
    if not all(math.isclose(total, 1.0, abs_tol=1e-6) for total in sums):
        return f"probability rows sum to {sums}"
    return None


def judge(response: ResponseContextManager | FastResponse, problem: str | None) -> None:
    """Mark a caught response failed with its reason (a non-2xx status first), or leave it a success."""
    if not 200 <= (response.status_code or 0) < 300:
        response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
    elif problem:
        response.failure(problem)


def body(response: FastResponse) -> Any:
    """The JSON of an answer, or None when it is not JSON (judged as malformed)."""
    try:
        return response.json()
    except (ValueError, TypeError):
        return None


class PenguinUser(FastHttpUser):
    """Someone at the penguins page, or a script of theirs: mostly single predictions, now and then a batch
    or a V2 call, sometimes the page again; one to three seconds between actions."""

    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.etag: str | None = None
        self.open_page()

    @task(2)
    def open_page(self) -> None:
        """What a browser fetches: the page, the served model, the chart's points (cached by ETag)."""
        with self.client.get("/", catch_response=True) as page:
            judge(page, None if "<form" in (page.text or "") else "the page has no form")
        with self.client.get("/model", catch_response=True) as model:
            manifest = body(model)
            judge(model, None if isinstance(manifest, dict) and manifest.get("classes") else "no classes")
        headers = {"If-None-Match": self.etag} if self.etag else {}
        with self.client.get("/model/training-points", headers=headers, catch_response=True) as points:
            if points.status_code == 304:
                points.success()
                return
            judge(points, None if isinstance(body(points), dict) else "the points are not an object")
            self.etag = points.headers.get("ETag") if points.status_code == 200 else None

    @task(10)
    def predict(self) -> None:
        with self.client.post("/predict", json=draw_penguin(self.rng), catch_response=True) as answer:
            judge(answer, prediction_problem(body(answer)))

    @task(3)
    def predict_batch(self) -> None:
        penguins = [draw_penguin(self.rng) for _ in range(self.rng.randint(*BATCH_SIZES))]
        with self.client.post("/predict/batch", json={"instances": penguins}, catch_response=True) as answer:
            predictions = (body(answer) or {}).get("predictions")
            if not isinstance(predictions, list) or len(predictions) != len(penguins):
                problem: str | None = f"{len(penguins)} penguins sent, answers: {predictions!r:.200}"
            else:
                problem = next(filter(None, map(prediction_problem, predictions)), None)
            judge(answer, problem)

    @task(5)
    def infer_v2(self) -> None:
        penguins = [draw_penguin(self.rng) for _ in range(self.rng.randint(1, BATCH_SIZES[0]))]
        with self.client.post(V2_INFER, json=v2_body(penguins), catch_response=True) as answer:
            judge(answer, v2_problem(body(answer), len(penguins)))


def summary(environment: Environment) -> dict[str, Any]:
    """The run in numbers, per request kind and in total: what `make loadtest` keeps beside Locust's CSV."""
    stats = environment.stats
    assert stats is not None

    def figures(entry: Any) -> dict[str, Any]:
        return {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "requests_per_second": round(entry.total_rps, 2),
            **{
                f"p{round(p * 100)}_ms": entry.get_response_time_percentile(p) if entry.num_requests else None
                for p in PERCENTILES
            },
            "max_ms": round(entry.max_response_time or 0, 1),
        }

    options = environment.parsed_options
    return provenance() | {
        "host": environment.host,
        "users": getattr(options, "num_users", None),
        "spawn_rate": getattr(options, "spawn_rate", None),
        "run_time": getattr(options, "run_time", None),
        "total": figures(stats.total),
        "requests": {
            f"{method} {name}": figures(entry) for (name, method), entry in sorted(stats.entries.items())
        },
        "failures": {
            f"{error.method} {error.name}": {
                "occurrences": error.occurrences,
                "error": str(error.error)[:300],
            }
            for error in stats.errors.values()
        },
    }


@events.quitting.add_listener
def write_summary(environment: Environment, **_: Any) -> None:
    """With `--csv <prefix>`, `<prefix>_summary.json` too: the figures and the commit, time and load they
    were measured at (scripts/provenance.py), as every results file under bench/results/ records them."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix and environment.stats is not None and not isinstance(environment.runner, WorkerRunner):
        target = Path(f"{prefix}{SUMMARY_SUFFIX}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(summary(environment), indent=2) + "\n")
