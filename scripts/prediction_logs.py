"""Prediction and feedback log files in the API's format (the monitor's tests and demos write them directly).

One line per answered penguin, `predictions-<UTC start>-<pid>.jsonl`, and one per true species told,
`feedback-<UTC start>-<pid>.jsonl`, as the API's writers do; see
`penguins_pipeline.monitoring.predictions_log` for the reading side.
"""

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from penguins_contract import PREDICTIONS_FILE_PREFIX, FeedbackRecord, PredictionRecord


def file_name(start: datetime, pid: int, prefix: str = PREDICTIONS_FILE_PREFIX) -> str:
    return f"{prefix}{start.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{pid}.jsonl"


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def records(
    penguins: pd.DataFrame,
    version: str,
    end: datetime | None = None,
    spacing: timedelta = timedelta(seconds=1),
) -> list[PredictionRecord]:
    """One /predict record per row of `penguins` (the six features, species), answered `spacing` apart up to
    `end`."""
    end = end or datetime.now(UTC)
    out: list[PredictionRecord] = []
    for position, row in enumerate(penguins.to_dict("records")):
        when = end - spacing * (len(penguins) - 1 - position)
        out.append(
            {
                "prediction_id": uuid.uuid4().hex,
                "request_id": uuid.uuid4().hex,
                "item": 0,
                "time": _utc(when),
                "endpoint": "predict",
                "model_version": version,
                "bill_length_mm": row["bill_length_mm"],
                "bill_depth_mm": row["bill_depth_mm"],
                "flipper_length_mm": row["flipper_length_mm"],
                "body_mass_g": row["body_mass_g"],
                "island": row["island"],
                "sex": row["sex"],
                "species": row["species"],
                "probabilities": {row["species"]: 1.0},
            }
        )
    return out


def feedback(
    predictions: Iterable[Mapping[str, Any]], species: Iterable[str], at: datetime | None = None
) -> list[FeedbackRecord]:
    """One label per prediction (its `prediction_id`), the true species from `species` in the same order,
    all told at `at`."""
    when = _utc(at or datetime.now(UTC))
    return [
        {
            "feedback_id": uuid.uuid4().hex,
            "prediction_id": prediction["prediction_id"],
            "species": true,
            "time": when,
            "request_id": uuid.uuid4().hex,
        }
        for prediction, true in zip(predictions, species, strict=True)
    ]


def lines(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def write_log(
    folder: Path,
    rows: Iterable[Mapping[str, Any]],
    start: datetime,
    pid: int,
    tail: bytes = b"",
    prefix: str = PREDICTIONS_FILE_PREFIX,
) -> Path:
    """A log file holding `rows` as whole lines, then `tail` (e.g. half a line, as a killed writer leaves)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name(start, pid, prefix)
    path.write_bytes(lines(rows) + tail)
    return path


def shifted(penguins: pd.DataFrame, n: int, seed: int, **shifts: float) -> pd.DataFrame:
    """`n` penguins drawn (seeded, with replacement) from `penguins`, each numeric column in `shifts` moved by
    that many of its standard deviations."""
    sample = penguins.sample(n=n, replace=True, random_state=np.random.RandomState(seed)).reset_index(
        drop=True
    )
    for name, sigmas in shifts.items():
        sample[name] = sample[name] + sigmas * penguins[name].std()
    return sample
