"""POST /predict and /predict/batch."""

from typing import Any

from fastapi import APIRouter, Depends, Response

from app import metrics
from app.deps import BatcherDep, PredictorDep, RecorderDep, batch_within_limit
from app.ids import new_id, new_ids
from app.model_store import NO_MODEL_YET
from app.responses import json_response
from app.schemas import BatchPrediction, BatchRequest, ErrorMessage, PenguinFeatures, Prediction

router = APIRouter(tags=["predict"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorMessage, "description": NO_MODEL_YET},
    413: {"model": ErrorMessage, "description": "Body over API_MAX_BODY_BYTES"},
}


@router.post("/predict", response_model=Prediction, responses=_ERRORS)
async def predict(penguin: PenguinFeatures, served: BatcherDep, record: RecorderDep) -> Response:
    """Species, probabilities, the 5 nearest training penguins, the PCA position and warnings."""
    predictor, batcher = served
    # Island and sex are checked before the request joins a micro-batch: an unknown one is its own 422, the
    # pass the others share never fails for it.
    answer = await batcher.submit((penguin, predictor.categories_of(penguin)))
    answer["prediction_id"] = new_id()
    metrics.count_predictions(answer["species"])
    record("predict", (penguin,), (answer,), predictor.encoder)
    return json_response(answer)


@router.post(
    "/predict/batch",
    response_model=BatchPrediction,
    responses=_ERRORS,
    dependencies=[Depends(batch_within_limit)],
)
def predict_batch(batch: BatchRequest, predictor: PredictorDep, record: RecorderDep) -> Response:
    """Up to API_MAX_BATCH_SIZE penguins, each answered as by /predict (neighbours only if asked).

    A plain `def`: FastAPI runs it in a worker thread, so a big batch does not stall other requests.
    """
    predictions = predictor.predict_batch(batch.instances, batch.include_neighbors)
    for prediction, prediction_id in zip(predictions, new_ids(len(predictions)), strict=True):
        prediction["prediction_id"] = prediction_id
    metrics.count_species(p["species"] for p in predictions)
    record("predict_batch", batch.instances, predictions, predictor.encoder)
    return json_response({"model_version": predictor.version, "predictions": predictions})
