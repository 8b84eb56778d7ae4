"""Liveness, readiness and Prometheus metrics."""

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from app import metrics
from app.deps import SettingsDep, StoreDep
from app.model_store import NO_MODEL_YET
from app.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> Health:
    """The process answers (it may still have no model: see /ready)."""
    return Health()


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(store: StoreDep) -> JSONResponse:
    """200 only while a model is served: what a load balancer or Compose healthcheck should wait for."""
    predictor = store.predictor
    if predictor is None:
        detail = f"{NO_MODEL_YET}. Last error: {store.last_error}" if store.last_error else NO_MODEL_YET
        body = Readiness(status="not_ready", model_version=None, detail=detail)
        return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    body = Readiness(status="ready", model_version=predictor.version, detail=store.last_error)
    return JSONResponse(body.model_dump())


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(settings: SettingsDep) -> Response:
    return Response(metrics.render(settings.artifacts_dir), media_type=metrics.CONTENT_TYPE)
