"""Reading one model version from ARTIFACTS_DIR, refusing anything that is not exactly what was promoted.

joblib files are pickles, which run code when loaded: only files whose sha256 matches the manifest are ever
unpickled, from the very bytes that were hashed (no window for a swap between check and load). A version
trained with another scikit-learn is refused before unpickling: its trees may load and still answer wrong.
"""

import hashlib
import io
import json
import re
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import joblib

CURRENT_FILE = "current.json"
MODELS_DIR = "models"
MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1
# Only well-formed ids are ever joined to a path: no "..", no separators.
VERSION_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}$")
REQUIRED_FILES = (
    "preprocessor.joblib",
    "model.joblib",
    "label_encoder.joblib",
    "pca.joblib",
    "training_data_for_viz.joblib",
    "training_split.joblib",
)


class LoadError(Exception):
    """A version that must not be served. `reason` is a short label for the load-failure metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LoadedVersion:
    version: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    objects: dict[str, Any]  # file name -> unpickled object


def read_current(artifacts_dir: Path) -> str | None:
    """The promoted version id, or None before the first promotion."""
    path = artifacts_dir / CURRENT_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise LoadError("current_json", f"cannot read {path}: {err}") from err
    try:
        version = json.loads(raw)["version"]
    except (ValueError, KeyError, TypeError) as err:
        raise LoadError("current_json", f'{path} is not {{"version": "<id>"}}: {err!r}') from err
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise LoadError("current_json", f"{path} names {version!r}, not a version id")
    return version


def load_version(artifacts_dir: Path, version: str) -> LoadedVersion:
    """Manifest checks, then sha256 of every file, then unpickling: the first problem refuses the version."""
    if not VERSION_PATTERN.match(version):
        raise LoadError("invalid", f"{version!r} is not a version id")
    folder = artifacts_dir / MODELS_DIR / version
    try:
        manifest_bytes = (folder / MANIFEST_FILE).read_bytes()
        manifest = json.loads(manifest_bytes)
    except (OSError, ValueError) as err:
        raise LoadError("manifest", f"version {version}: cannot read {MANIFEST_FILE}: {err}") from err
    _check_manifest(version, manifest)
    files = manifest["files"]
    objects = {}
    for name in REQUIRED_FILES:
        try:
            data = (folder / name).read_bytes()
        except OSError as err:
            raise LoadError("missing_file", f"version {version}: cannot read {name}: {err}") from err
        expected = files[name]
        if (
            len(data) != expected.get("bytes", len(data))
            or hashlib.sha256(data).hexdigest() != expected["sha256"]
        ):
            raise LoadError(
                "checksum",
                f"version {version}: {name} does not match its sha256 in the manifest "
                f"({len(data)} bytes on disk): corrupt or partial file, not loaded",
            )
        try:
            objects[name] = joblib.load(io.BytesIO(data))
        except Exception as err:  # unpickling can raise anything; the message is what matters
            raise LoadError("unreadable", f"version {version}: cannot unpickle {name}: {err!r}") from err
    return LoadedVersion(version, manifest, manifest_bytes, objects)


def _check_manifest(version: str, manifest: Any) -> None:
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        raise LoadError("manifest", f"version {version}: manifest schema_version is not {SCHEMA_VERSION}")
    if manifest.get("version") != version:
        raise LoadError(
            "manifest", f"version {version}: its manifest says version {manifest.get('version')!r}"
        )
    trained_with = (manifest.get("libraries") or {}).get("scikit-learn")
    installed = installed_version("scikit-learn")
    if trained_with != installed:
        raise LoadError(
            "sklearn_version",
            f"version {version} was trained with scikit-learn {trained_with}, this API runs {installed}: "
            "refused (pickled trees are only safe in the same version); retrain it or pin the same version",
        )
    files = manifest.get("files")
    missing = [
        n for n in REQUIRED_FILES if not isinstance(files, dict) or "sha256" not in (files.get(n) or {})
    ]
    if missing:
        raise LoadError("manifest", f"version {version}: the manifest has no sha256 for {missing}")
