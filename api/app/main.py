"""Builds the FastAPI app: settings, the model store and its poller (lifespan), routes, middleware."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app import errors, metrics, openapi
from app.core.config import Settings, get_settings
from app.core.exposure import exposure_warning
from app.loader import LoadError
from app.middleware import BodyLimitMiddleware, MetricsMiddleware, RequestIdMiddleware
from app.model_sources import model_source
from app.model_store import ModelStore, NoPromotedVersionError
from app.prediction_log import FeedbackLog, PredictionLog, start_log
from app.routers import docs, feedback, health, inference_v2, model, monitoring, page, predict, vendor, warmup

log = logging.getLogger(__name__)


def freeze_the_libraries() -> None:
    """Once, before any model is loaded: the libraries' objects out of the cyclic collector's scans, which
    otherwise stall big batches. A model adds next to no objects to scan and is never frozen, so a replaced
    one is freed like any object, even one caught in a reference cycle (a failed request's traceback holds
    its frames): frozen objects are never collected."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warning := exposure_warning(settings):
            log.warning(warning)
        freeze_the_libraries()
        store = ModelStore(model_source(settings), settings.api_near_tie_margin)
        app.state.model_store = store
        app.state.prediction_log = prediction_log = start_log(settings, PredictionLog)
        app.state.feedback_log = feedback_log = start_log(settings, FeedbackLog)
        try:
            await store.refresh()
        except (NoPromotedVersionError, LoadError) as err:
            log.warning("starting without a model: %s", err)
        poller = asyncio.create_task(store.poll(settings.api_model_poll_seconds))
        yield
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        for running in (prediction_log, feedback_log):
            if running is not None:
                running.close()  # after the last answer: uvicorn runs this once connections are done
        metrics.worker_exiting()

    app = FastAPI(
        title="Penguin species API",
        summary="Palmer penguin species from four measures, island and sex, and why.",
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,  # routers/docs.py serves both pages with their files from the API itself
        redoc_url=None,
    )
    app.state.settings = settings
    for router in (
        predict.router,
        feedback.router,
        inference_v2.router,
        model.router,
        health.router,
        warmup.router,
        page.router,
        docs.router,
        vendor.router,
        monitoring.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    errors.install(app)
    openapi.install(app, settings)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.api_max_body_bytes,
        limits_by_path={
            "/predict/batch": settings.api_max_batch_body_bytes,
            "/feedback": settings.api_max_batch_body_bytes,
        },
        drain_limit=settings.api_max_drain_bytes,
        limits_by_pattern=[(inference_v2.INFER_PATH, settings.api_max_batch_body_bytes)],
    )
    app.add_middleware(MetricsMiddleware)  # outside the body limit: 413s are counted too
    app.add_middleware(RequestIdMiddleware)  # added last = outermost: every answer carries X-Request-ID
    return app


app = create_app()
