"""The client's side of the feedback loop (issue 21), shared by the native loop (test_e2e_feedback_loop.py)
and the compose scenario (test_compose_stack.py): answers for a colony, their true species back by
`prediction_id`, and the live-accuracy gauge the API shows once monitor_pipeline has judged them."""

import re
import time
from typing import Any

import httpx
import pandas as pd

from penguins_contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES


def serve(api: httpx.Client, penguins: pd.DataFrame) -> dict[str, Any]:
    """The penguins through /predict/batch: the API's answer."""
    instances = penguins[[*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]].to_dict("records")
    answered = api.post("/predict/batch", json={"instances": instances})
    assert answered.status_code == 200, answered.text
    return dict(answered.json())


def label(api: httpx.Client, predictions: list[dict[str, Any]], species: list[str]) -> None:
    """Their true species to /feedback by prediction_id, in one request (so with one `labelled_at`)."""
    pairs = zip(predictions, species, strict=True)
    labels = [{"prediction_id": p["prediction_id"], "species": s} for p, s in pairs]
    accepted = api.post("/feedback", json=labels)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == len(labels)


def serve_and_label(api: httpx.Client, colony: pd.DataFrame) -> tuple[str, float]:
    """The colony through /predict/batch, then its true species to /feedback by prediction_id: the version
    that answered and its accuracy on the colony."""
    body = serve(api, colony)
    truths = colony["species"].astype(str).tolist()
    label(api, body["predictions"], truths)
    correct = sum(p["species"] == truth for p, truth in zip(body["predictions"], truths, strict=True))
    time.sleep(0.5)  # past the logs' flush period
    return body["model_version"], correct / len(colony)


def live_accuracy(api: httpx.Client, version: str) -> float:
    """`penguin_live_accuracy` of that model version in /metrics."""
    metrics = api.get("/metrics").text
    pattern = rf'^penguin_live_accuracy\{{model_version="{re.escape(version)}"\}} (\S+)$'
    found = re.search(pattern, metrics, re.M)
    assert found, metrics
    return float(found[1])
