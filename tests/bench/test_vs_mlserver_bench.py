"""The offline parts of bench/vs_mlserver.py. MLServer is installed from a package registry into a venv of its
own, so the whole comparison runs in `make bench` only. Here: the model MLServer gets answers as this API
does, the API accepts the benchmark's requests and its answers are read right, MLServer is configured as
each comparison says, and the medians, ratios (each against the better MLServer configuration) and goal
verdicts of the README's table come out of the rounds as described. Nothing here judges speed."""

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
            name: {
                "singles": [mlserver(body) for body in known[name].bodies[: bench.COMPARED]],
                "batch": mlserver(known[name].batch(batch)),
            }
            for name in bench.MLSERVER_CONFIGURATIONS
        }
    compared = bench.compare(answers, classes)
    assert set(compared) == {"predict", "v2", "mlserver_batching"}
    for name in compared:
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


def test_mlserver_runs_with_its_defaults_and_with_adaptive_batching(tmp_path: Path) -> None:
    written = {}
    for name in bench.MLSERVER_CONFIGURATIONS:
        bench.configure_mlserver(tmp_path, 8123, name)
        written[name] = json.loads((tmp_path / "model-settings.json").read_text())
        settings = json.loads((tmp_path / "settings.json").read_text())
        assert settings["http_port"] == 8123 and settings["parallel_workers"] == 0
        assert written[name]["parameters"] == {"uri": "./model.joblib"}
    assert "max_batch_size" not in written["mlserver"] and "max_batch_time" not in written["mlserver"]
    assert written["mlserver_batching"]["max_batch_size"] == 16
    assert written["mlserver_batching"]["max_batch_time"] == 0.002
    assert set(bench.endpoints(real_penguins(4))) == {"predict", "v2", "mlserver", "mlserver_batching"}


def turn(cold: float, rss: float, **endpoints: tuple[float, ...]) -> dict[str, Any]:
    keys = ("requests_per_second", "p50_ms", "p99_ms", "p50_ms_1_connection", "batch_ms")
    return {
        "cold_start_s": cold,
        "rss_mb": rss,
        "endpoints": {name: dict(zip(keys, values, strict=True)) for name, values in endpoints.items()},
    }


def test_figures_are_medians_and_each_ratio_is_against_the_better_mlserver_configuration() -> None:
    rounds = [
        {  # a slow round for everyone: the ratios hold, the figures drop
            "api": turn(1.0, 100, predict=(400, 4, 8, 1, 20), v2=(300, 5, 9, 1, 10)),
            "mlserver": turn(2.0, 200, mlserver=(20, 50, 90, 8, 40)),
            "mlserver_batching": turn(2.5, 190, mlserver_batching=(100, 20, 40, 9, 50)),
        },
        {
            "api": turn(3.0, 110, predict=(800, 2, 4, 1, 10), v2=(600, 3, 5, 1, 5)),
            "mlserver": turn(2.0, 220, mlserver=(40, 30, 60, 6, 20)),
            "mlserver_batching": turn(2.0, 230, mlserver_batching=(200, 10, 20, 8, 25)),
        },
        {
            "api": turn(2.0, 120, predict=(600, 3, 6, 1, 30), v2=(500, 4, 7, 1, 15)),
            "mlserver": turn(4.0, 200, mlserver=(30, 40, 70, 7, 10)),
            "mlserver_batching": turn(3.0, 210, mlserver_batching=(125, 15, 30, 8, 30)),
        },
    ]
    summary = bench.summarize(rounds)
    assert summary["endpoints"]["v2"]["requests_per_second"] == 500
    assert summary["endpoints"]["mlserver"]["batch_ms"] == 20
    assert summary["endpoints"]["mlserver_batching"]["requests_per_second"] == 125
    assert summary["processes"] == {
        "api": {"cold_start_s": 2.0, "rss_mb": 110},
        "mlserver": {"cold_start_s": 2.0, "rss_mb": 200},
        "mlserver_batching": {"cold_start_s": 2.5, "rss_mb": 210},
    }
    # Against each configuration, as measured in the same round.
    by_configuration = summary["ratios_by_configuration"]
    assert by_configuration["mlserver"]["v2_requests_per_second_over_mlserver"] == 15  # 15, 15 and 16.7
    assert by_configuration["mlserver_batching"]["v2_requests_per_second_over_mlserver"] == 3  # 3, 3 and 4
    # Each reported ratio against the configuration whose median is better on that measure.
    assert summary["ratios_against"] == {
        "v2_requests_per_second_over_mlserver": "mlserver_batching",  # 125 req/s against 30
        "predict_requests_per_second_over_mlserver": "mlserver_batching",
        "v2_batch_over_mlserver": "mlserver",  # 20 ms against 30
        "predict_batch_over_mlserver": "mlserver",
        "cold_start_over_mlserver": "mlserver",  # 2.0 s against 2.5
        "rss_over_mlserver": "mlserver",  # 200 MB against 210
    }
    ratios = summary["ratios"]
    assert ratios["v2_requests_per_second_over_mlserver"] == 3
    assert ratios["predict_requests_per_second_over_mlserver"] == 4  # 4, 4 and 4.8
    assert ratios["v2_batch_over_mlserver"] == 0.25  # 0.25, 0.25 and 1.5
    assert ratios["predict_batch_over_mlserver"] == 0.5  # 0.5, 0.5 and 3
    assert ratios["cold_start_over_mlserver"] == 0.5  # 0.5, 1.5 and 0.5
    assert ratios["rss_over_mlserver"] == 0.5

    results = json.loads(json.dumps(summary)) | {
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "uncommitted_changes": [],
        "measured_at": "2026-12-07T12:00:00Z",
        "machine": {"cpus": 2, "python": "3.11", "load_average": [1.0, 1.0, 1.0]},
        "setup": {"rounds": 3, "wrk_seconds": 4, "connections": 16, "batch_penguins": 1000,
                  "mlserver": bench.MLSERVER, "mlserver_configurations": bench.MLSERVER_CONFIGURATIONS},
        "answers": {name: {"penguins": 1020, "species_equal": True, "max_abs_probability_difference": 1e-16}
                    for name in ("predict", "v2", "mlserver_batching")},
    }  # fmt: skip
    table = vs_mlserver(results)
    batching = "adaptive batching (`max_batch_size: 16, max_batch_time: 0.002`)"
    missed = "**missed** by a factor of 6.67"
    assert f"| V2 req/s ÷ MLServer req/s | {batching} | 3.00 | ≥ 20 | {missed} |" in table
    assert "| V2 batch time ÷ MLServer's | defaults | 0.25 | ≤ 0.5 | met |" in table
    assert f"| `/predict` req/s ÷ MLServer req/s | {batching} | 4.00 |" in table
    assert "| MLServer 1.7.1, V2 infer, defaults | 30 | 40 | 70 | 7 | 20 | 2.00 | 200 |" in table
    assert f"| MLServer 1.7.1, V2 infer, {batching} | 125 | 15 | 30 | 8 | 30 | 2.50 | 210 |" in table
    assert "species equal / largest probability difference | yes / 1.0e-16 |" in table
    assert "Measured 2026-12-07 at commit `0123456789`, on 2 CPUs" in table


def test_a_missed_goal_says_by_how_much() -> None:
    assert verdict(20, 20, at_least=True) == "met"
    assert verdict(10, 20, at_least=True) == "**missed** by a factor of 2.00"
    assert verdict(0.5, 0.5, at_least=False) == "met"
    assert verdict(0.75, 0.5, at_least=False) == "**missed** by a factor of 1.50"
