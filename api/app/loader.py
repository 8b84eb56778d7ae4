"""Reading one model version from ARTIFACTS_DIR, refusing anything that is not exactly what was promoted.

joblib files are pickles, which run code when loaded: only files whose sha256 matches the manifest are ever
unpickled, from the very bytes that were hashed (no window for a swap between check and load). A version
trained with another scikit-learn is refused before unpickling: its trees may load and still answer wrong.
The layout, manifest checks and checksums are `penguins_contract`'s, the same code the pipeline writes with.
"""

import io
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import joblib

import penguins_contract as contract
from penguins_contract import MANIFEST_FILE, VERSION_FILES, ContractError


class LoadError(ContractError):
    """A version that must not be served. `reason` is a short label for the load-failure metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason)


def _load_error(err: ContractError) -> LoadError:
    """A contract violation refuses the version with the contract's reason label and message."""
    return err if isinstance(err, LoadError) else LoadError(err.reason, str(err))


@dataclass(frozen=True)
class LoadedVersion:
    version: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    objects: dict[str, Any]  # file name -> unpickled object


def read_current(artifacts_dir: Path) -> str | None:
    """The promoted version id, or None before the first promotion."""
    with contract.translated(_load_error):
        return contract.read_current(artifacts_dir)


def load_version(artifacts_dir: Path, version: str) -> LoadedVersion:
    """Manifest checks, then sha256 of every file, then unpickling: the first problem refuses the version."""
    where = f"version {version}"
    with contract.translated(_load_error):
        folder = contract.version_dir(artifacts_dir, version)
        try:
            manifest_bytes = (folder / MANIFEST_FILE).read_bytes()
        except OSError as err:
            raise LoadError("manifest", f"{where}: cannot read {MANIFEST_FILE}: {err}") from err
        manifest = contract.parse_manifest(manifest_bytes, where)
        contract.check_manifest(manifest, version, where)
        _check_trained_with(version, manifest)
        files = contract.listed_files(manifest, where)
    objects = {}
    for name in VERSION_FILES:
        try:
            data = (folder / name).read_bytes()
        except OSError as err:
            raise LoadError("missing_file", f"{where}: cannot read {name}: {err}") from err
        with contract.translated(_load_error):
            # The bytes hashed here are the bytes unpickled below: no window for a swap in between.
            contract.check_bytes(name, data, files[name], where)
        try:
            objects[name] = joblib.load(io.BytesIO(data))
        except Exception as err:  # unpickling can raise anything; the message is what matters
            raise LoadError("unreadable", f"version {version}: cannot unpickle {name}: {err!r}") from err
    return LoadedVersion(version, manifest, manifest_bytes, objects)


def _check_trained_with(version: str, manifest: dict[str, Any]) -> None:
    """Pickled trees are only safe in the scikit-learn they were trained with (serving's own rule)."""
    trained_with = (manifest.get("libraries") or {}).get("scikit-learn")
    installed = installed_version("scikit-learn")
    if trained_with != installed:
        raise LoadError(
            "sklearn_version",
            f"version {version} was trained with scikit-learn {trained_with}, this API runs {installed}: "
            "refused (pickled trees are only safe in the same version); retrain it or pin the same version",
        )
