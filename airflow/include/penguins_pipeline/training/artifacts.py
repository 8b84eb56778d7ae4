"""The model-version folder on disk: write it so no reader ever sees half of it, verify it, promote it.

Layout, manifest schema, checksums and `current.json` are the contract with the API, written once in
`penguins_contract`; this module is its writing side. A version is built in
`models/.tmp-<version>-<random>/`, fsynced, renamed into place; `current.json` is replaced atomically and
last. Readers ignore names starting with a dot.

Roll back from a shell with `make rollback VERSION=<version>` (`penguins_pipeline.training.cli`).
"""

import os
import pickle
import secrets
import shutil
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np

import penguins_contract as contract
from penguins_contract import ContractError
from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.files import (
    STAGING_PREFIX,
    fsync_path,
    remove_folder,
    temp_path,
    write_json_atomically,
)
from penguins_pipeline.training import export
from penguins_pipeline.training.model import TrainedModel

# Held-out rows and the in-memory model's answers, kept in the staging folder only until `publish`.
HELDOUT_FILE = ".heldout.joblib"
STALE_STAGING_SECONDS = 3600
# A temporary `current.json` lives for the milliseconds of one write; one older than this was left by a
# promote killed before its rename (SIGKILL, power loss), never by one still writing.
STALE_POINTER_SECONDS = 60


class ArtifactError(PermanentError, RuntimeError):
    """A version folder or `current.json` is missing, malformed or does not match its manifest."""


def _artifact_error(err: ContractError) -> ArtifactError:
    """The contract's checks fail the task at once, as an `ArtifactError` with the contract's message."""
    return ArtifactError(str(err))


class ArtifactsNotWritableError(ArtifactError):
    pass


def new_version_id(digest: str, now: datetime | None = None) -> str:
    """UTC time to the microsecond, so lexical order is chronological, plus 8 hex of the data+params hash."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{digest[:8]}"


def check_version_id(version: str) -> str:
    with contract.translated(_artifact_error):
        return contract.check_version_id(version)


def version_dir(artifacts_dir: Path, version: str) -> Path:
    with contract.translated(_artifact_error):
        return contract.version_dir(artifacts_dir, version)


def list_versions(artifacts_dir: Path) -> list[str]:
    """Published versions, oldest first."""
    models = Path(artifacts_dir) / contract.MODELS_DIR
    if not models.is_dir():
        return []
    return sorted(
        p.name for p in models.iterdir() if p.is_dir() and contract.VERSION_PATTERN.fullmatch(p.name)
    )


def ensure_writable(artifacts_dir: Path) -> Path:
    """Create `models/` and prove it is writable: fail early, with the fix, rather than after training."""
    models = Path(artifacts_dir) / contract.MODELS_DIR
    try:
        models.mkdir(parents=True, exist_ok=True)
        probe = models / f"{STAGING_PREFIX}probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ArtifactsNotWritableError(
            f"ARTIFACTS_DIR {Path(artifacts_dir).resolve()} is not writable ({err}). With Docker "
            "Compose, put AIRFLOW_UID=$(id -u) in .env and restart, or run: "
            f"sudo chown -R ${{AIRFLOW_UID:-50000}}:0 {artifacts_dir}"
        ) from err
    return models


def _dump(obj: Any, path: Path) -> None:
    """Pickle with the C pickler, not `joblib.dump`: joblib's pickler is the pure-Python one, which an
    imported dill (Airflow imports it in every task process) extends with its own reducers, so the file would
    need dill to load. The C pickler keeps its own table; `joblib.load` and `pickle.load` both read it."""
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
        handle.flush()
        os.fsync(handle.fileno())


def stage_version(
    artifacts_dir: Path,
    version: str,
    objects: Mapping[str, Any],
    manifest: Mapping[str, Any],
    heldout: Mapping[str, Any] | None = None,
) -> Path:
    """Write every file of a version into a hidden staging folder; `publish` makes it visible."""
    check_version_id(version)
    staging = ensure_writable(artifacts_dir) / f"{STAGING_PREFIX}{version}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        files = {}
        for name in contract.VERSION_FILES:
            if name == contract.SERVING_FILE:
                export.save(objects[name], staging / name)
            else:
                _dump(objects[name], staging / name)
            files[name] = contract.file_entry(staging / name)
        write_json_atomically(staging / contract.MANIFEST_FILE, {**manifest, "files": files})
        if heldout is not None:
            _dump(dict(heldout), staging / HELDOUT_FILE)
        fsync_path(staging)
    except BaseException:
        discard(staging)  # a killed process leaves it instead: hidden, and swept by `prune` an hour later
        raise
    return staging


def staged_version(staging: Path) -> str:
    """The version id a staging folder was built for."""
    return check_version_id(Path(staging).name.removeprefix(STAGING_PREFIX).rsplit("-", 1)[0])


def publish(staging: Path) -> Path:
    """Rename a verified staging folder into `models/<version>` (never over an existing version)."""
    staging = Path(staging)
    target = staging.parent / staged_version(staging)
    (staging / HELDOUT_FILE).unlink(missing_ok=True)
    fsync_path(staging)
    if target.exists():
        raise ArtifactError(f"version {target.name} already exists in {target.parent}")
    os.rename(staging, target)
    fsync_path(target.parent)
    return target


def discard(staging: Path) -> None:
    """Remove a staging folder that must not be published (refused by the gate, failed verification)."""
    shutil.rmtree(staging, ignore_errors=True)


def read_manifest(folder: Path) -> dict[str, Any]:
    with contract.translated(_artifact_error):
        return contract.read_manifest(folder)


def verify_files(folder: Path) -> dict[str, Any]:
    """Every file of the contract is there and matches the sha256 of the manifest; returns the manifest."""
    with contract.translated(_artifact_error):
        return contract.verify_folder(folder)


def load_model(folder: Path) -> TrainedModel:
    """A fresh `joblib.load` of the fitted objects of a version folder."""
    return TrainedModel(
        **{field: joblib.load(Path(folder) / name) for field, name in contract.MODEL_FILES.items()}
    )


def _check_loaded(folder: Path) -> tuple[TrainedModel, dict[str, Any]]:
    """Files match the manifest, every one loads, the model answers with the manifest's classes, and the
    serving export reproduces the model."""
    manifest = verify_files(folder)
    model = load_model(folder)
    classes = list(model.label_encoder.classes_)
    if classes != manifest["classes"] or len(model.model.classes_) != len(classes):
        raise ArtifactError(f"{folder}: the model's classes {classes} differ from the manifest's")
    split = joblib.load(Path(folder) / contract.SPLIT_FILE)
    viz = joblib.load(Path(folder) / contract.VIZ_FILE)
    if len(split["features_raw"]) != manifest["data"]["rows_train"] or len(viz["features_pca"]) == 0:
        raise ArtifactError(f"{folder}: the training data files do not match the manifest's row counts")
    model.predict(split["features_raw"].head(5))
    try:
        export.check_export(export.load(Path(folder) / contract.SERVING_FILE), model)
    except export.ExportError as err:
        raise ArtifactError(f"{folder}: {err}") from err
    return model, manifest


def verify_staged(staging: Path) -> dict[str, Any]:
    """Reloaded from disk, the staged model answers exactly as the in-memory one did on the held-out rows."""
    model, manifest = _check_loaded(staging)
    heldout = joblib.load(Path(staging) / HELDOUT_FILE)
    reloaded = model.predict_proba(heldout["features"])
    if not np.array_equal(reloaded, heldout["probabilities"]):
        changed = int((reloaded != heldout["probabilities"]).any(axis=1).sum())
        raise ArtifactError(
            f"{staging}: reloaded from disk, the model answers differently on {changed} of "
            f"{len(reloaded)} held-out rows"
        )
    return manifest


def verify_version(artifacts_dir: Path, version: str) -> dict[str, Any]:
    """Check a published version before pointing `current.json` at it (promotion, rollback)."""
    folder = version_dir(artifacts_dir, version)
    if not folder.is_dir():
        known = ", ".join(list_versions(artifacts_dir)) or "none"
        raise ArtifactError(f"version {version} not found in {folder.parent} (available: {known})")
    manifest = _check_loaded(folder)[1]
    with contract.translated(_artifact_error):
        contract.check_manifest(manifest, version, str(folder))
    return manifest


def read_current(artifacts_dir: Path) -> str | None:
    """The promoted version, or None before the first promotion."""
    with contract.translated(_artifact_error):
        return contract.read_current(artifacts_dir)


def promote(artifacts_dir: Path, version: str) -> dict[str, str]:
    """Point `current.json` at a published version, after checking its files against the manifest."""
    verify_files(version_dir(artifacts_dir, version))
    current = {"version": version, "promoted_at": datetime.now(UTC).isoformat()}
    write_json_atomically(Path(artifacts_dir) / contract.CURRENT_FILE, current)
    return current


def _older_than(path: Path, seconds: float, now: float) -> bool:
    """False for a path that is gone meanwhile (a concurrent writer renamed it into place)."""
    try:
        return now - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def prune(
    artifacts_dir: Path,
    keep: int,
    stale_after: float = STALE_STAGING_SECONDS,
    stale_pointer_after: float = STALE_POINTER_SECONDS,
) -> list[str]:
    """Keep the newest `keep` versions and the promoted one; drop what killed writers left: staging folders
    over an hour old, temporary `current.json` files over a minute old."""
    models = Path(artifacts_dir) / contract.MODELS_DIR
    current = read_current(artifacts_dir)
    versions = list_versions(artifacts_dir)
    doomed = [v for v in versions[: max(len(versions) - keep, 0)] if v != current]
    now = time.time()
    stale = [
        p.name
        for p in (models.iterdir() if models.is_dir() else [])
        if p.name.startswith(STAGING_PREFIX) and _older_than(p, stale_after, now)
    ]
    pointers = [
        p
        for p in Path(artifacts_dir).glob(temp_path(Path(contract.CURRENT_FILE), "*").name)
        if _older_than(p, stale_pointer_after, now)
    ]
    for name in doomed:
        remove_folder(models / name)
    for name in stale:
        path = models / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for path in pointers:
        path.unlink(missing_ok=True)
    return doomed + stale + [p.name for p in pointers]
