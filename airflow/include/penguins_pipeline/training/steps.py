"""The steps of `train_pipeline`, one function per task, taking and returning only small values (XCom).

The model travels between steps on disk: `train` stages the version folder and returns its path; `gate` and
`verify` discard it when they refuse it, `promote` publishes it. Testable without Airflow.

With MLFLOW_TRACKING_URI set, `record` logs every trained version as a run (refused ones too), `register`
registers one that passed the gate and verification as `challenger`, and `promote` and `rollback` move the
`champion` alias with `current.json` (`make_champion`). A tracking server that is down fails those tasks
before anything moves; they are retried and, being idempotent, do on a rerun only what is missing.
"""

import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import penguins_contract as contract
from penguins_contract import registry
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.core.store import read_clean
from penguins_pipeline.training import artifacts, tracking
from penguins_pipeline.training.evaluate import QualityGateError, quality_gate
from penguins_pipeline.training.train import stage_training
from penguins_pipeline.training.warmup import warm_up

log = logging.getLogger(__name__)


def train(settings: PipelineSettings) -> dict[str, Any]:
    """Read `penguins_clean`, fit, evaluate, stage a version; score the promoted model on the same rows."""
    staged = stage_training(read_clean(settings.penguins_db_url), settings.artifacts_dir, settings)
    metrics = staged.metrics
    log.info(
        "Staged %s: held-out accuracy %.4f, macro-F1 %.4f, CV accuracy %.4f ± %.4f; promoted model: %s",
        staged.version,
        metrics["accuracy"],
        metrics["f1_macro"],
        metrics["cv"]["accuracy_mean"],
        metrics["cv"]["accuracy_std"],
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
    return tracking.record_run(settings, version_folder(settings, staged), tags)


def gate(settings: PipelineSettings, staged: dict[str, Any]) -> str:
    folder = staging_dir(settings, staged)
    try:
        verdict = quality_gate(
            staged["metrics"]["accuracy"], staged["current"], settings.min_accuracy, settings.gate_tolerance
        )
    except QualityGateError:
        artifacts.discard(folder)
        raise
    log.info("Quality gate passed: %s", verdict)
    return verdict


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
