"""POST /warmup: load the promoted version (current.json, or the MLflow `champion` alias) now, instead of
at the next poll."""

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status

from app.deps import StoreDep, require_warmup_token
from app.loader import LoadError
from app.model_store import NoPromotedVersionError
from app.schemas import ErrorMessage, ServedVersion

router = APIRouter(tags=["operations"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorMessage, "description": "WARMUP_TOKEN is set and no bearer token was sent"},
    403: {"model": ErrorMessage, "description": "Wrong bearer token"},
    503: {"model": ErrorMessage, "description": "Nothing promoted yet, or the promoted version was refused"},
}


@router.post("/warmup", dependencies=[Depends(require_warmup_token)], responses=_ERRORS)
async def warmup(store: StoreDep) -> ServedVersion:
    """Serve the promoted version; retries a version that failed before. The served one is kept on failure."""
    try:
        return await store.refresh(force=True)
    except (NoPromotedVersionError, LoadError) as err:
        served = store.predictor.version if store.predictor else None
        kept = f"; still serving {served}" if served else ""
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{err}{kept}") from None
