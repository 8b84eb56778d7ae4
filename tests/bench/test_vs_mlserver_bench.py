"""The offline parts of bench/vs_mlserver.py. MLServer is installed from a package registry into a venv of its
own, so the whole comparison runs in `make bench` only. Here: the model MLServer gets answers as this API
does, the API accepts the benchmark's requests and its answers are read right, and the medians, ratios and
goal verdicts of the README's table come out of the rounds as described. Nothing here judges speed."""

import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import vs_mlserver as bench
from bench_tables import verdict, vs_mlserver
from fastapi.testclient import TestClient
from serving import real_penguins

from app.core.config import Settings
from app.main import create_app
from penguins_pipeline.training import artifacts


def as_mlserver_decodes(body: dict[str, Any]) -> pd.DataFrame:
    """What MLServer's pandas codec (`content_type: pd`) makes of a request: one column per named input."""
    return pd.DataFrame({entry["name"]: entry["data"] for entry in body["inputs"]})


def as_mlserver_answers(probabilities: np.ndarray) -> dict[str, Any]:
    """MLServer's scikit-learn runtime's answer to `outputs: [{"name": "predict_proba"}]` (NumPy codec)."""
    return {
        "outputs": [
            {
                "name": "predict_proba",
                "shape": list(probabilities.shape),
                "datatype": "FP64",
                "data": probabilities.ravel().tolist(),
            }
        ]
    }


@pytest.fixture
def served(tmp_path: Path, versions: Any) -> tuple[Path, str]:
    """The session's trained versions (tests/conftest.py), `main` promoted in a private copy."""
    folder = tmp_path / "artifacts"
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    return folder, versions.main


def test_the_pipeline_mlserver_gets_answers_as_this_apis_predict_and_v2_infer(
    tmp_path: Path, served: tuple[Path, str]
) -> None:
    folder, version = served
    classes = bench.dump_pipeline(folder, version, tmp_path / "mlserver")
    pipeline = joblib.load(tmp_path / "mlserver" / "model.joblib")
    assert [name for name, _ in pipeline.steps] == ["preprocessor", "model"]
    penguins = [p | {"sex": p["sex"].lower()} for p in real_penguins(64)]
    batch = [penguins[i % len(penguins)] for i in range(bench.BATCH)]
    known = bench.endpoints(penguins)

    def mlserver(body: dict[str, Any]) -> dict[str, Any]:
        assert body["parameters"] == {"content_type": "pd"}
        assert body["outputs"] == [{"name": "predict_proba"}]
        return as_mlserver_answers(pipeline.predict_proba(as_mlserver_decodes(body)))

    with TestClient(create_app(Settings(artifacts_dir=folder))) as client:

        def api(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = client.post(path, json=body)
            assert response.status_code == 200, response.text
            return response.json()

        answers = {
            name: {
                "singles": [api(known[name].path, body) for body in known[name].bodies[: bench.COMPARED]],
                "batch": api(known[name].batch_path, known[name].batch(batch)),
            }
            for name in ("predict", "v2")
        } | {
            "mlserver": {
                "singles": [mlserver(body) for body in known["mlserver"].bodies[: bench.COMPARED]],
                "batch": mlserver(known["mlserver"].batch(batch)),
            },
        }
    compared = bench.compare(answers, classes)
    for name in ("predict", "v2"):
        assert compared[name]["penguins"] == bench.COMPARED + bench.BATCH
        assert compared[name]["species_equal"]
        assert compared[name]["max_abs_probability_difference"] < 1e-9


def test_compare_refuses_answers_whose_species_differ() -> None:
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    mlserver = as_mlserver_answers(np.array([[0.9, 0.1, 0.0]]))
    api = {"species": "Gentoo", "probabilities": {"Adelie": 0.1, "Chinstrap": 0.0, "Gentoo": 0.9}}
    answers = {
        "predict": {"singles": [api], "batch": {"predictions": [api]}},
        "mlserver": {"singles": [mlserver], "batch": mlserver},
    }
    with pytest.raises(RuntimeError, match="predict: 2 species differ"):
        bench.compare(answers, classes)


def turn(cold: float, rss: float, **endpoints: dict[str, float]) -> dict[str, Any]:
    keys = ("requests_per_second", "p50_ms", "p99_ms", "p50_ms_1_connection", "batch_ms")
    return {
        "cold_start_s": cold,
        "rss_mb": rss,
        "endpoints": {name: dict(zip(keys, values, strict=True)) for name, values in endpoints.items()},
    }


def test_figures_are_medians_of_rounds_and_ratios_medians_of_per_round_ratios() -> None:
    rounds = [
        {  # a slow round for everyone: the ratios hold, the figures drop
            "api": turn(1.0, 100, predict=(400, 4, 8, 1, 20), v2=(300, 5, 9, 1, 10)),
            "mlserver": turn(2.0, 200, mlserver=(20, 50, 90, 8, 40)),
        },
        {
            "api": turn(3.0, 110, predict=(800, 2, 4, 1, 10), v2=(600, 3, 5, 1, 5)),
            "mlserver": turn(2.0, 220, mlserver=(40, 30, 60, 6, 20)),
        },
        {
            "api": turn(2.0, 120, predict=(600, 3, 6, 1, 30), v2=(500, 4, 7, 1, 15)),
            "mlserver": turn(4.0, 200, mlserver=(30, 40, 70, 7, 10)),
        },
    ]
    summary = bench.summarize(rounds)
    assert summary["endpoints"]["v2"]["requests_per_second"] == 500
    assert summary["endpoints"]["mlserver"]["batch_ms"] == 20
    assert summary["processes"] == {
        "api": {"cold_start_s": 2.0, "rss_mb": 110},
        "mlserver": {"cold_start_s": 2.0, "rss_mb": 200},
    }
    ratios = summary["ratios"]
    assert ratios["v2_requests_per_second_over_mlserver"] == 15  # 15, 15 and 16.7 in the rounds
    assert ratios["v2_batch_over_mlserver"] == 0.25  # 0.25, 0.25 and 1.5
    assert ratios["predict_batch_over_mlserver"] == 0.5  # 0.5, 0.5 and 3
    assert ratios["cold_start_over_mlserver"] == 0.5  # 0.5, 1.5 and 0.5
    assert ratios["rss_over_mlserver"] == 0.5

    results = json.loads(json.dumps(summary)) | {
        "machine": {"cpus": 2, "python": "3.11", "load_average": [1.0, 1.0, 1.0]},
        "setup": {"rounds": 3, "wrk_seconds": 4, "connections": 16, "batch_penguins": 1000,
                  "mlserver": bench.MLSERVER},
        "answers": {name: {"penguins": 1020, "species_equal": True, "max_abs_probability_difference": 1e-16}
                    for name in ("predict", "v2")},
    }  # fmt: skip
    table = vs_mlserver(results)
    assert "| V2 req/s ÷ MLServer req/s | 15.00 | ≥ 20 | **missed** by a factor of 1.33 |" in table
    assert "| V2 batch time ÷ MLServer's | 0.25 | ≤ 0.5 | met |" in table
    assert "| MLServer 1.7.1, V2 infer, scikit-learn runtime | 30 | 40 | 70 | 7 | 20 | 2.00 | 200 |" in table
    assert "species equal / largest probability difference | yes / 1.0e-16 |" in table


def test_a_missed_goal_says_by_how_much() -> None:
    assert verdict(20, 20, at_least=True) == "met"
    assert verdict(10, 20, at_least=True) == "**missed** by a factor of 2.00"
    assert verdict(0.5, 0.5, at_least=False) == "met"
    assert verdict(0.75, 0.5, at_least=False) == "**missed** by a factor of 1.50"
