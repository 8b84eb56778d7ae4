"""`manifest.json` of a version: its schema version, and the checks every reader makes before trusting it."""

import json
from pathlib import Path
from typing import Any

from penguins_contract.errors import ContractError
from penguins_contract.layout import MANIFEST_FILE

# Bumped on any change a reader of the previous schema would misread; readers refuse other versions.
SCHEMA_VERSION = 1


def parse_manifest(raw: bytes | str, where: str) -> dict[str, Any]:
    """The manifest as a dict; ContractError (reason "manifest") for bad JSON or anything but an object."""
    try:
        manifest = json.loads(raw)
    except ValueError as err:
        raise ContractError(f"{where}: cannot read {MANIFEST_FILE}: {err}", "manifest") from err
    if not isinstance(manifest, dict):
        raise ContractError(f"{where}: {MANIFEST_FILE} is not a JSON object", "manifest")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a version folder; ContractError (reason "manifest") when it cannot be read."""
    path = Path(folder) / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ContractError(f"cannot read {path}: {err}", "manifest") from err
    return parse_manifest(raw, str(folder))


def check_manifest(manifest: dict[str, Any], version: str, where: str) -> None:
    """The manifest is of this schema and describes this version (not a folder copied under another name)."""
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ContractError(f"{where}: manifest schema_version is not {SCHEMA_VERSION}", "manifest")
    if manifest.get("version") != version:
        raise ContractError(f"{where}: its manifest says version {manifest.get('version')!r}", "manifest")
