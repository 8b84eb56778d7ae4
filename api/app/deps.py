"""Typed dependencies of the routes. All async: a sync dependency would cost a thread hop per request."""

import secrets
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.config import Settings
from app.model_store import NO_MODEL_YET, ModelStore, PredictBatcher
from app.prediction_log import RequestRecorder
from app.predictor import Predictor


async def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> ModelStore:
    return _store(request)


def _store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.model_store
    return store


Part = TypeVar("Part")


def _served(part: Part | None) -> Part:
    """A part of the served version, or 503 while no version is served."""
    if part is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_MODEL_YET)
    return part


async def get_predictor(request: Request) -> Predictor:
    """The served version, read once: the whole request answers from it even if a swap happens meanwhile."""
    return _served(_store(request).predictor)


async def get_batcher(request: Request) -> tuple[Predictor, PredictBatcher]:
    """The served version and its batcher, read together (a swap replaces both at once): /predict's answer
    comes from that one version, and its log record names that version's categories."""
    store = _store(request)
    return _served(store.predictor), _served(store.batcher)


async def get_recorder(request: Request) -> RequestRecorder:
    """This worker's prediction log, bound to the id RequestIdMiddleware gave this request."""
    return RequestRecorder(request.app.state.prediction_log, request.state.request_id)


async def batch_within_limit(request: Request, settings: Annotated[Settings, Depends(app_settings)]) -> None:
    """/predict/batch's instances counted on the parsed JSON, before pydantic validates them one by one: a
    body of tens of thousands of penguins is refused without validating any (FastAPI solves dependencies
    before it validates the body, and parsed it already: `request.json()` returns that parse)."""
    try:
        body = await request.json()
    except ValueError:  # not JSON at all: the body's validation says so
        return
    instances = body.get("instances") if isinstance(body, dict) else None
    if isinstance(instances, list) and len(instances) > settings.api_max_batch_size:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "type": "too_long",
                    "loc": ["body", "instances"],
                    "msg": f"at most {settings.api_max_batch_size} instances per batch (API_MAX_BATCH_SIZE), "
                    f"got {len(instances)}",
                }
            ],
        )


SettingsDep = Annotated[Settings, Depends(app_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
BatcherDep = Annotated[tuple[Predictor, PredictBatcher], Depends(get_batcher)]
RecorderDep = Annotated[RequestRecorder, Depends(get_recorder)]

_bearer = HTTPBearer(auto_error=False, description="WARMUP_TOKEN, when the server sets one")


async def require_warmup_token(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    if settings.warmup_token is None:
        return
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this server sets WARMUP_TOKEN: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(
        credentials.credentials.encode(), settings.warmup_token.get_secret_value().encode()
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong warmup token")
