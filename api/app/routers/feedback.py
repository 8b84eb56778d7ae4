"""POST /feedback: the true species of answered penguins, appended to the feedback log (app/prediction_log.py)
for monitor_pipeline's live accuracy and the training rows it builds from them."""

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status

from app import metrics
from app.deps import FeedbackLogDep, PredictorDep, feedback_within_limit
from app.model_store import NO_MODEL_YET
from app.schemas import ErrorMessage, FeedbackAccepted, FeedbackBody

router = APIRouter(tags=["feedback"])
LOG_LAGS = "the feedback log's writer lags behind: nothing of this request was kept, send it again shortly"
_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorMessage,
        "description": f"{NO_MODEL_YET}; or PREDICTIONS_LOG=false (feedback is not kept); or {LOG_LAGS}",
    },
    413: {"model": ErrorMessage, "description": "Body over API_MAX_BATCH_BODY_BYTES"},
}


def _unknown_species(position: int, species: str, classes: tuple[str, ...]) -> dict[str, Any]:
    """One refused label, in the shape of the validation errors."""
    return {
        "type": "enum",
        "loc": ["body", position, "species"],
        "msg": f"unknown species {species!r}: the served model knows {', '.join(classes)}",
        "input": species,
        "ctx": {"expected": list(classes)},
    }


@router.post(
    "/feedback",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FeedbackAccepted,
    responses=_ERRORS,
    dependencies=[Depends(feedback_within_limit)],
)
def feedback(
    labels: FeedbackBody, predictor: PredictorDep, feedback_log: FeedbackLogDep, request: Request
) -> FeedbackAccepted:
    """The true species of answered penguins: one `{"prediction_id", "species"}` or a list of them, all
    accepted or none. A label whose prediction_id the log does not hold is kept too; monitor_pipeline reports
    it as unmatched.

    A plain `def`: a long list is checked and queued in a worker thread, not on the event loop."""
    spelling = {name.lower(): name for name in predictor.classes}
    refused = [
        _unknown_species(position, label.species, predictor.classes)
        for position, label in enumerate(labels)
        if label.species.lower() not in spelling
    ]
    if refused:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, refused)
    true_species = [spelling[label.species.lower()] for label in labels]
    feedback_ids = feedback_log.record(
        request.state.request_id,
        [(label.prediction_id, species) for label, species in zip(labels, true_species, strict=True)],
    )
    if feedback_ids is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, LOG_LAGS)
    metrics.count_feedback(true_species)
    return FeedbackAccepted(accepted=len(feedback_ids), feedback_ids=feedback_ids)
