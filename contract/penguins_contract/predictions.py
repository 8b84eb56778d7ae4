"""The prediction log's record, written once: the API writes one per answered penguin
(api/app/prediction_log.py), monitor_pipeline loads them into the table `penguins_predictions` (the README's
"Prediction log" describes each field). The writer annotates its records with `PredictionRecord`, so mypy
holds it to these fields.
"""

import re
from typing import Literal, TypedDict, get_args

PredictionEndpoint = Literal["predict", "predict_batch", "v2_infer"]


class PredictionRecord(TypedDict):
    """One answered penguin, the fields in the order the API writes them: the key first."""

    prediction_id: str
    request_id: str
    item: int
    time: str
    endpoint: PredictionEndpoint
    model_version: str
    bill_length_mm: float
    bill_depth_mm: float
    flipper_length_mm: float
    body_mass_g: float
    island: str
    sex: str
    species: str
    probabilities: dict[str, float]


PREDICTION_FIELDS: tuple[str, ...] = tuple(PredictionRecord.__annotations__)
# Made by the API for every answered penguin, never by the client (unlike request_id, its X-Request-ID):
# unique, so it is the key of `penguins_predictions` and what feedback names.
PREDICTION_KEY = PREDICTION_FIELDS[0]
PREDICTION_ENDPOINTS: tuple[str, ...] = get_args(PredictionEndpoint)
# A uuid4 in hex, as the API makes it.
PREDICTION_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
