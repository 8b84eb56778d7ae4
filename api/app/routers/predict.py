"""POST /predict and /predict/batch."""

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Response, status

from app import metrics
from app.deps import BatcherDep, PredictorDep, RecorderDep, SettingsDep
from app.ids import new_id, new_ids
from app.model_store import NO_MODEL_YET
from app.schemas import BatchPrediction, BatchRequest, ErrorMessage, PenguinFeatures, Prediction

router = APIRouter(tags=["predict"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorMessage, "description": NO_MODEL_YET},
    413: {"model": ErrorMessage, "description": "Body over API_MAX_BODY_BYTES"},
}


def _json(content: Any) -> Response:
    """The answer is built from plain floats and strings: dump it directly with orjson, far cheaper than the
    standard library or pydantic re-validating it."""
    return Response(orjson.dumps(content), media_type="application/json")


@router.post("/predict", response_model=Prediction, responses=_ERRORS)
async def predict(penguin: PenguinFeatures, served: BatcherDep, record: RecorderDep) -> Response:
    """Species, probabilities, the 5 nearest training penguins, the PCA position and warnings."""
    predictor, batcher = served
    answer = await batcher.submit(penguin)
    answer["prediction_id"] = new_id()
    metrics.count_predictions(answer["species"])
    record("predict", (penguin,), (answer,), predictor.encoder)
    return _json(answer)


@router.post("/predict/batch", response_model=BatchPrediction, responses=_ERRORS)
def predict_batch(
    batch: BatchRequest,
    predictor: PredictorDep,
    settings: SettingsDep,
    record: RecorderDep,
) -> Response:
    """Up to API_MAX_BATCH_SIZE penguins, each answered as by /predict (neighbours only if asked).

    A plain `def`: FastAPI runs it in a worker thread, so a big batch does not stall other requests.
    """
    if len(batch.instances) > settings.api_max_batch_size:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "type": "too_long",
                    "loc": ["body", "instances"],
                    "msg": f"at most {settings.api_max_batch_size} instances per batch (API_MAX_BATCH_SIZE), "
                    f"got {len(batch.instances)}",
                }
            ],
        )
    predictions = predictor.predict_batch(batch.instances, batch.include_neighbors)
    for prediction, prediction_id in zip(predictions, new_ids(len(predictions)), strict=True):
        prediction["prediction_id"] = prediction_id
    metrics.count_species(p["species"] for p in predictions)
    record("predict_batch", batch.instances, predictions, predictor.encoder)
    return _json({"model_version": predictor.version, "predictions": predictions})
