"""Checking one promoted version, wherever it is kept, and refusing anything that is not exactly what was
promoted.

The API reads only the version's manifest and its serving export (`serving.npz`, plain arrays written by the
pipeline): nothing is unpickled, so neither scikit-learn nor pandas is imported, and the scikit-learn the
version was trained with no longer matters here. What proves the arrays instead is the export's reference
rows: the Predictor reproduces scikit-learn's outputs on them, computed at training time, or refuses the
version. The export is checked against its sha256 from the very bytes then loaded (no window for a swap).
The layout, manifest checks and checksums are `penguins_contract`'s, the same code the pipeline writes with.

Where the two files come from is a `VersionFiles` (the folder here; the MLflow registry in
`app.mlflow_registry`): the checks below are written once for every source.
"""

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import penguins_contract as contract
from penguins_contract import MANIFEST_FILE, SERVING_ARRAYS, SERVING_FILE, ContractError


class LoadError(ContractError):
    """A version that must not be served. `reason` is a short label for the load-failure metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason)


class SourceUnavailableError(LoadError):
    """The source did not answer this time (e.g. MLflow is down): nothing is known against the version, so
    it is not remembered as refused, and the next poll tries again."""


def _load_error(err: ContractError) -> LoadError:
    """A contract violation refuses the version with the contract's reason label and message."""
    return err if isinstance(err, LoadError) else LoadError(err.reason, str(err))


class VersionFiles(Protocol):
    """One promoted version's two files, as its source keeps them: all the checks need of a source."""

    @property
    def version(self) -> str:
        """The version id (`models/<version>/`, the manifest's `version`)."""

    @property
    def where(self) -> str:
        """The version and where its files come from: in every message about it, and the key a refusal of
        these very files is remembered by."""

    def manifest_bytes(self) -> bytes:
        """The manifest as stored; LoadError when it cannot be read."""

    def export_bytes(self) -> bytes:
        """The serving export as stored; LoadError when it cannot be read."""


@dataclass(frozen=True)
class LoadedVersion:
    version: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    arrays: dict[str, np.ndarray]  # the serving export, array name -> array


@dataclass(frozen=True)
class FolderVersion:
    """A version under ARTIFACTS_DIR/models/, as the pipeline writes it."""

    artifacts_dir: Path
    version: str

    @property
    def where(self) -> str:
        return f"version {self.version}"

    def manifest_bytes(self) -> bytes:
        return self._read(MANIFEST_FILE, "manifest")

    def export_bytes(self) -> bytes:
        return self._read(SERVING_FILE, "missing_file")

    def _read(self, name: str, reason: str) -> bytes:
        try:
            return (contract.version_dir(self.artifacts_dir, self.version) / name).read_bytes()
        except OSError as err:
            raise LoadError(reason, f"{self.where}: cannot read {name}: {err}") from err


def read_current(artifacts_dir: Path) -> str | None:
    """The promoted version id, or None before the first promotion."""
    with contract.translated(_load_error):
        return contract.read_current(artifacts_dir)


def load_version(artifacts_dir: Path, version: str) -> LoadedVersion:
    """A version of ARTIFACTS_DIR, checked."""
    return load(FolderVersion(artifacts_dir, version))


def load(files: VersionFiles) -> LoadedVersion:
    """Manifest checks, then the export's sha256, then its arrays: the first problem refuses the version."""
    where = files.where
    with contract.translated(_load_error):
        manifest_bytes = files.manifest_bytes()
        manifest = contract.parse_manifest(manifest_bytes, where)
        contract.check_manifest(manifest, files.version, where)
        if SERVING_FILE not in (manifest.get("files") or {}):
            raise LoadError(
                "no_export",
                f"{where} has no {SERVING_FILE} (trained before the API served from that export): "
                "retrain it with train_pipeline, or roll back to a version that has one",
            )
        entry = contract.listed_files(manifest, where)[SERVING_FILE]
        data = files.export_bytes()
        contract.check_bytes(SERVING_FILE, data, entry, where)
    return LoadedVersion(files.version, manifest, manifest_bytes, _arrays(data, where))


def _arrays(data: bytes, where: str) -> dict[str, np.ndarray]:
    """Every array the contract names, read without unpickling (an object array is refused)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            missing = [name for name in SERVING_ARRAYS if name not in archive.files]
            if missing:
                raise LoadError("invalid", f"{where}: {SERVING_FILE} lacks the arrays {missing}")
            return {name: archive[name] for name in SERVING_ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise LoadError("unreadable", f"{where}: cannot read {SERVING_FILE}: {err!r}") from err
