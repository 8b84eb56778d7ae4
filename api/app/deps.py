"""Typed dependencies of the routes. All async: a sync dependency would cost a thread hop per request."""

import secrets
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.config import Settings
from app.model_store import NO_MODEL_YET, ModelStore, PredictBatcher
from app.prediction_log import FeedbackLog, RequestRecorder
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
FEEDBACK_NOT_KEPT = (
    "feedback is not kept: this server runs with PREDICTIONS_LOG=false, and labels are written beside the "
    "prediction log; set PREDICTIONS_LOG=true (and PREDICTIONS_DIR) to accept feedback"
)


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


def _too_many(items: Any, settings: Settings, loc: list[str], what: str) -> None:
    """422 when `items` (the parsed JSON) is a list of more than API_MAX_BATCH_SIZE."""
    if isinstance(items, list) and len(items) > settings.api_max_batch_size:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "type": "too_long",
                    "loc": loc,
                    "msg": f"at most {settings.api_max_batch_size} {what} per request (API_MAX_BATCH_SIZE), "
                    f"got {len(items)}",
                }
            ],
        )


async def _parsed_body(request: Request) -> Any:
    """The body as FastAPI parsed it already (`request.json()` returns that parse); None if not JSON (the
    body's validation says so)."""
    try:
        return await request.json()
    except ValueError:
        return None


async def batch_within_limit(request: Request, settings: Annotated[Settings, Depends(app_settings)]) -> None:
    """/predict/batch's instances counted on the parsed JSON, before pydantic validates them one by one: a
    body of tens of thousands of penguins is refused without validating any (FastAPI solves dependencies
    before it validates the body)."""
    body = await _parsed_body(request)
    instances = body.get("instances") if isinstance(body, dict) else None
    _too_many(instances, settings, ["body", "instances"], "instances")


async def feedback_within_limit(
    request: Request, settings: Annotated[Settings, Depends(app_settings)]
) -> None:
    """POST /feedback's labels counted as /predict/batch's instances are, before any is validated."""
    _too_many(await _parsed_body(request), settings, ["body"], "labels")


async def get_feedback_log(request: Request) -> FeedbackLog:
    """This worker's feedback log, or 503 with PREDICTIONS_LOG=false: a label never kept is never taken."""
    feedback_log: FeedbackLog | None = request.app.state.feedback_log
    if feedback_log is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, FEEDBACK_NOT_KEPT)
    return feedback_log


SettingsDep = Annotated[Settings, Depends(app_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]
BatcherDep = Annotated[tuple[Predictor, PredictBatcher], Depends(get_batcher)]
RecorderDep = Annotated[RequestRecorder, Depends(get_recorder)]
FeedbackLogDep = Annotated[FeedbackLog, Depends(get_feedback_log)]

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
