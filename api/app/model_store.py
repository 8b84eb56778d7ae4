"""Which version this worker serves, and how it changes: load beside the served one, then swap one reference.

Each worker polls its model source (`current.json`, or the MLflow registry's `champion` alias: see
app.model_sources) by itself, so every worker of every replica converges within seconds without a /warmup
call; /warmup only makes it happen now. Loading runs in a thread, so requests keep being answered by the old
version meanwhile; a version that fails to load is remembered and not retried by polling (only by /warmup),
and never replaces the served one. A source that does not answer (MLflow down) changes nothing: the served
version stays, and the next poll asks again.
"""

import asyncio
import logging
from typing import Any

from anyio import to_thread

from app import metrics
from app.batching import MicroBatcher
from app.loader import LoadError, SourceUnavailableError, VersionFiles, load
from app.model_sources import ModelSource
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
    def __init__(self, source: ModelSource, near_tie_margin: float) -> None:
        self.source = source
        self.predictor: Predictor | None = None
        # /predict answers through this, from the served predictor: requests arriving together share a pass.
        self.batcher: PredictBatcher | None = None
        self.group_batcher: GroupBatcher | None = None
        self.last_error: str | None = None
        self._near_tie_margin = near_tie_margin
        # Why each refused version was refused, by its `where`: the version id and, in the registry, which
        # registered copy (the same id registered again with sound files is a new chance).
        self._failed: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def refresh(self, force: bool = False) -> ServedVersion:
        """Serve the version the source says is promoted. Raises NoPromotedVersionError or LoadError."""
        async with self._lock:
            served = self.predictor
            try:
                promoted = await to_thread.run_sync(self.source.promoted)
            except LoadError as err:
                self._note(err)
                raise
            if promoted is None:
                raise NoPromotedVersionError(f"{self.source.pointer} does not exist: {NO_MODEL_YET}")
            version = promoted.version
            if served is not None and served.version == version:
                self.last_error = None  # whatever was wrong with the source has been put right
                return ServedVersion(model_version=version, previous_version=version, changed=False)
            if promoted.where in self._failed and not force:
                raise LoadError("known_bad", self._failed[promoted.where])
            try:
                predictor = await to_thread.run_sync(self._build, promoted)
            except SourceUnavailableError as err:
                self._note(err)  # nothing learnt about the version: not remembered as refused
                raise
            except LoadError as err:
                self._failed[promoted.where] = self.last_error = str(err)
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
            self._failed.pop(promoted.where, None)
            self.last_error = None
            metrics.set_served_version(version, served.version if served else None)
            log.info("serving model version %s (was %s)", version, served.version if served else "none")
            return ServedVersion(
                model_version=version, previous_version=served.version if served else None, changed=True
            )

    def _note(self, err: LoadError) -> None:
        """A problem of the source, logged and counted once per distinct problem, not at every poll."""
        if str(err) != self.last_error:
            log.error("%s", err)
            metrics.MODEL_LOAD_FAILURES.labels(reason=err.reason).inc()
        self.last_error = str(err)

    def _build(self, files: VersionFiles) -> Predictor:
        loaded = load(files)
        try:
            return Predictor(loaded, self._near_tie_margin)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
            raise LoadError(
                "invalid", f"{files.where} does not follow the artifact contract: {err!r}"
            ) from err

    async def poll(self, interval: float) -> None:
        """Converge on the promoted version forever (the lifespan cancels this task at shutdown)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except (LoadError, NoPromotedVersionError):
                pass  # logged where it happened; keep serving what we have
            except Exception:
                log.exception("unexpected error while checking for a new model version")
