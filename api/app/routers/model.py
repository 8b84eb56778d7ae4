"""GET /model (the served manifest) and the chart's training points, cacheable per model version."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from app.deps import PredictorDep
from app.model_store import NO_MODEL_YET
from app.schemas import ErrorMessage, TrainingPoints

router = APIRouter(tags=["model"])
_NO_MODEL: dict[int | str, dict[str, Any]] = {503: {"model": ErrorMessage, "description": NO_MODEL_YET}}


@router.get(
    "/model", responses={200: {"description": "The manifest.json of the served version"}, **_NO_MODEL}
)
async def model(predictor: PredictorDep) -> Response:
    """The manifest of the served version: data fingerprint, features, classes, metrics, params, libraries."""
    return Response(predictor.manifest_json, media_type="application/json")


@router.get(
    "/model/training-points",
    response_model=TrainingPoints,
    responses={304: {"description": "Unchanged since the ETag sent in If-None-Match"}, **_NO_MODEL},
)
async def training_points(
    predictor: PredictorDep, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    """The chart's training points. The ETag is the model version: a browser re-downloads them only after a
    promotion."""
    etag = f'"{predictor.version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and etag in (tag.strip() for tag in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(predictor.training_points_json, media_type="application/json", headers=headers)
