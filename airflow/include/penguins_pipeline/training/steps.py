"""The steps of `train_pipeline`, one function per task, taking and returning only small values (XCom).

The model travels between steps on disk: `train` stages the version folder and returns its path; `gate` and
`verify` discard it when they refuse it, `promote` publishes it. Testable without Airflow.

Training data is `penguins_clean` plus the older labelled live rows of `penguins_labelled`; its newest
LIVE_TEST_FRACTION is the live test set. `gate` decides challenger against champion (`evaluate.challenge`)
and writes the decision to ARTIFACTS_DIR/retraining/latest.json: a candidate refused by the held-out gate
fails the task as it always did; one that is not better than the champion on live rows is discarded and the
run succeeds with the champion kept.

With MLFLOW_TRACKING_URI set, `record` logs every trained version as a run (refused ones too), `register`
registers one that passed the gate and verification as `challenger`, and `promote` and `rollback` move the
`champion` alias with `current.json` (`make_champion`). A tracking server that is down fails those tasks
before anything moves; they are retried and, being idempotent, do on a rerun only what is missing.
"""

import logging
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import penguins_contract as contract
from penguins_contract import registry
from penguins_pipeline.core.files import write_json_atomically
from penguins_pipeline.core.schema import RETRAINING_DIR, RETRAINING_FILE
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.core.store import read_clean, read_labelled
from penguins_pipeline.training import artifacts, tracking
from penguins_pipeline.training.evaluate import QualityGateError, challenge
from penguins_pipeline.training.train import stage_training
from penguins_pipeline.training.warmup import warm_up

log = logging.getLogger(__name__)


def train(settings: PipelineSettings) -> dict[str, Any]:
    """Read `penguins_clean` and `penguins_labelled`, fit, evaluate, stage a version; score the promoted model
    on the same held-out and live rows."""
    url = settings.penguins_db_url
    staged = stage_training(read_clean(url), settings.artifacts_dir, settings, read_labelled(url))
    metrics = staged.metrics
    log.info(
        "Staged %s: held-out accuracy %.4f, macro-F1 %.4f, CV accuracy %.4f ± %.4f, live accuracy %s on %d "
        "rows; promoted model: %s",
        staged.version,
        metrics["accuracy"],
        metrics["f1_macro"],
        metrics["cv"]["accuracy_mean"],
        metrics["cv"]["accuracy_std"],
        metrics["live"]["accuracy"],
        metrics["live"]["rows"],
        staged.current,
    )
    return asdict(staged)


def staging_dir(settings: PipelineSettings, staged: dict[str, Any]) -> Path:
    """The folder named in XCom, refused unless it is a staging folder in ARTIFACTS_DIR (we may delete it)."""
    path = Path(staged["staging_dir"])
    models = (Path(settings.artifacts_dir) / contract.MODELS_DIR).resolve()
    named = path.name.startswith(f"{artifacts.STAGING_PREFIX}{staged['version']}-")
    if path.resolve().parent != models or not named:
        raise artifacts.ArtifactError(f"{path} is not a staging folder of {staged['version']} in {models}")
    return path


def version_folder(settings: PipelineSettings, staged: dict[str, Any]) -> Path:
    """Where the version is now: published already (a `promote` that failed half-way, then a cleared
    task), or still staged."""
    published = artifacts.version_dir(settings.artifacts_dir, staged["version"])
    return published if published.is_dir() else staging_dir(settings, staged)


def record(settings: PipelineSettings, staged: dict[str, Any], tags: Mapping[str, str]) -> str | None:
    """Record the staged version as an MLflow run (before the gate, so refused models are compared too)."""
    if not tracking.enabled(settings):
        return None
    decision, _ = challenge(staged["metrics"], staged["current"], settings)
    return tracking.record_run(settings, version_folder(settings, staged), tags, decision)


def retraining_file(settings: PipelineSettings) -> Path:
    return Path(settings.artifacts_dir) / RETRAINING_DIR / RETRAINING_FILE


def gate(
    settings: PipelineSettings, staged: dict[str, Any], tags: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Challenger against champion: record the decision, discard a refused candidate, and fail the task only
    when the held-out gate refused it (a champion kept for better live accuracy is not a failure)."""
    folder = staging_dir(settings, staged)
    decision, gate_refused = challenge(staged["metrics"], staged["current"], settings)
    written = {
        "time": datetime.now(UTC).isoformat(),
        "dag_run_id": (tags or {}).get("airflow_run_id", ""),
        "candidate": staged["version"],
        **decision,
    }
    retraining_file(settings).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(retraining_file(settings), written)
    log.info(
        "Decision %s: %s (held-out %s, live %s)",
        "promote" if decision["promoted"] else "keep the champion",
        decision["reason"],
        decision["heldout"],
        decision["live"],
    )
    if not decision["promoted"]:
        artifacts.discard(folder)
        if gate_refused:
            raise QualityGateError(decision["reason"])
    return written


def verify(settings: PipelineSettings, staged: dict[str, Any]) -> str:
    """Reload the staged files in this fresh process and compare with what the trained model answered."""
    folder = staging_dir(settings, staged)
    try:
        artifacts.verify_staged(folder)
    except artifacts.ArtifactError:
        artifacts.discard(folder)
        raise
    return staged["version"]


def register(settings: PipelineSettings, staged: dict[str, Any], tags: Mapping[str, str]) -> str | None:
    """A candidate that passed the gate and verification becomes the registry's `challenger`."""
    if not tracking.enabled(settings):
        return None
    return tracking.set_alias(settings, registry.CHALLENGER, version_folder(settings, staged), tags)


def make_champion(settings: PipelineSettings, version: str, tags: Mapping[str, str] | None = None) -> str:
    """Serve a published version: the `champion` alias first (registering the version if it is not), then
    `current.json`. A tracking server that is down fails this before either pointer moves."""
    if tracking.enabled(settings):
        folder = artifacts.version_dir(settings.artifacts_dir, version)
        tracking.set_alias(settings, registry.CHAMPION, folder, tags)
    return artifacts.promote(settings.artifacts_dir, version)["version"]


def promote(settings: PipelineSettings, staged: dict[str, Any], tags: Mapping[str, str] | None = None) -> str:
    """Publish the staged folder, then make it the champion (a retry finds it published already)."""
    if not artifacts.version_dir(settings.artifacts_dir, staged["version"]).is_dir():
        artifacts.publish(staging_dir(settings, staged))
    version = make_champion(settings, staged["version"], tags)
    log.info("Promoted %s in %s", version, settings.artifacts_dir)
    return version


def rollback(settings: PipelineSettings, version: str, tags: Mapping[str, str] | None = None) -> str:
    """Serve a kept version again (the DAG's `rollback_to` and `make rollback VERSION=<id>`): a full check of
    its files, then both pointers."""
    artifacts.verify_version(settings.artifacts_dir, version)
    promoted = make_champion(settings, version, tags)
    log.info("Rolled back: %s is promoted again", promoted)
    return promoted


def prune(settings: PipelineSettings) -> list[str]:
    removed = artifacts.prune(settings.artifacts_dir, settings.keep_versions)
    log.info(
        "Removed %s; kept the newest %d versions and the promoted one",
        removed or "nothing",
        settings.keep_versions,
    )
    return removed


def warmup(settings: PipelineSettings) -> dict[str, Any] | None:
    token = settings.warmup_token.get_secret_value() if settings.warmup_token else None
    return warm_up(
        settings.api_url,
        token,
        settings.warmup_attempts,
        settings.warmup_backoff_seconds,
        settings.warmup_timeout_seconds,
    )
