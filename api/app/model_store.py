"""Which version this worker serves, and how it changes: load beside the served one, then swap one reference.

Each worker polls current.json by itself (so every worker of every replica converges within seconds without
a /warmup call); /warmup only makes it happen now. Loading runs in a thread, so requests keep being answered
by the old version meanwhile; a version that fails to load is remembered and not retried by polling (only by
/warmup), and never replaces the served one.
"""

import asyncio
import logging
from pathlib import Path
from typing import Any

from anyio import to_thread

from app import metrics
from app.batching import MicroBatcher
from app.loader import LoadError, load_version, read_current
from app.open_inference import InferRequest, answer_groups
from app.predictor import Predictor, PredictRequest, Scores
from app.schemas import ServedVersion

log = logging.getLogger(__name__)
# Answers /predict requests, one penguin each, from the served predictor.
PredictBatcher = MicroBatcher[PredictRequest, dict[str, Any]]
# Scores small V2 infer requests, a few penguins each, from the served predictor.
GroupBatcher = MicroBatcher[InferRequest, Scores]
NO_MODEL_YET = (
    "no model yet: run train_pipeline (Airflow) to train and promote one; this API picks it up within "
    "seconds (or at once with POST /warmup)."
)


class NoPromotedVersionError(LookupError):
    pass


class ModelStore:
    def __init__(self, artifacts_dir: Path, near_tie_margin: float) -> None:
        self.artifacts_dir = artifacts_dir
        self.predictor: Predictor | None = None
        # /predict answers through this, from the served predictor: requests arriving together share a pass.
        self.batcher: PredictBatcher | None = None
        self.group_batcher: GroupBatcher | None = None
        self.last_error: str | None = None
        self._near_tie_margin = near_tie_margin
        self._failed: dict[str, str] = {}  # version -> why it was refused
        self._lock = asyncio.Lock()

    async def refresh(self, force: bool = False) -> ServedVersion:
        """Serve the version named in current.json. Raises NoPromotedVersionError or LoadError."""
        async with self._lock:
            served = self.predictor
            try:
                version = await to_thread.run_sync(read_current, self.artifacts_dir)
            except LoadError as err:
                if str(err) != self.last_error:  # once per distinct problem, not every poll
                    log.error("%s", err)
                    metrics.MODEL_LOAD_FAILURES.labels(reason=err.reason).inc()
                self.last_error = str(err)
                raise
            if version is None:
                raise NoPromotedVersionError(
                    f"{self.artifacts_dir / 'current.json'} does not exist: {NO_MODEL_YET}"
                )
            if served is not None and served.version == version:
                self.last_error = None  # whatever was wrong with current.json has been put right
                return ServedVersion(model_version=version, previous_version=version, changed=False)
            if version in self._failed and not force:
                raise LoadError("known_bad", self._failed[version])
            try:
                predictor = await to_thread.run_sync(self._build, version)
            except LoadError as err:
                self._failed[version] = self.last_error = str(err)
                metrics.MODEL_LOAD_FAILURES.labels(reason=err.reason).inc()
                kept = f"still serving {served.version}" if served else "no model served"
                log.error("model version refused: %s (%s)", err, kept)
                raise
            # The swap: references read once per request (no await in between, so never seen apart).
            self.predictor, self.batcher, self.group_batcher = (
                predictor,
                MicroBatcher(predictor.answer_requests),
                MicroBatcher(answer_groups(predictor)),
            )
            self._failed.pop(version, None)
            self.last_error = None
            metrics.set_served_version(version, served.version if served else None)
            log.info("serving model version %s (was %s)", version, served.version if served else "none")
            return ServedVersion(
                model_version=version, previous_version=served.version if served else None, changed=True
            )

    def _build(self, version: str) -> Predictor:
        loaded = load_version(self.artifacts_dir, version)
        try:
            return Predictor(loaded, self._near_tie_margin)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
            raise LoadError(
                "invalid", f"version {version} does not follow the artifact contract: {err!r}"
            ) from err

    async def poll(self, interval: float) -> None:
        """Converge on current.json forever (the lifespan cancels this task at shutdown)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except (LoadError, NoPromotedVersionError):
                pass  # logged where it happened; keep serving what we have
            except Exception:
                log.exception("unexpected error while checking for a new model version")
