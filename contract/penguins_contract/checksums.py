"""The sha256 of every file of a version, as listed in its manifest: a reader trusts no file that differs.

A reader that unpickles must hash the very bytes it then loads (`check_bytes`), never a file read twice.
"""

import hashlib
from pathlib import Path
from typing import Any

from penguins_contract.errors import ContractError
from penguins_contract.layout import MANIFEST_FILE, VERSION_FILES
from penguins_contract.manifest import read_manifest

_BLOCK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Read in blocks: a training split may be larger than one wants in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """What the manifest records of one file."""
    return {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}


def listed_files(manifest: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """The manifest's `files`: a sha256 for every file of the contract, and for any extra file it lists
    (a plain name in the version folder: nothing outside it is ever read on the manifest's word)."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ContractError(f"{where}: the manifest lists no files", "manifest")
    missing = [n for n in VERSION_FILES if not isinstance(files.get(n), dict) or "sha256" not in files[n]]
    if missing:
        raise ContractError(f"{where}: the manifest has no sha256 for {missing}", "manifest")
    odd = [
        name
        for name, entry in files.items()
        if not name
        or name != Path(name).name
        or name.startswith(".")
        or not isinstance(entry, dict)
        or "sha256" not in entry
    ]
    if odd:
        raise ContractError(f"{where}: the manifest lists unusable file entries {sorted(odd)}", "manifest")
    return files


def _mismatch(where: str, name: str, size: int) -> ContractError:
    return ContractError(
        f"{where}: {name} does not match the sha256 in {MANIFEST_FILE} ({size} bytes on disk): "
        "corrupt or partial file",
        "checksum",
    )


def check_bytes(name: str, data: bytes, entry: dict[str, Any], where: str) -> None:
    """These bytes are the file the manifest vouches for (size, when recorded, and sha256)."""
    if len(data) != entry.get("bytes", len(data)) or sha256_bytes(data) != entry["sha256"]:
        raise _mismatch(where, name, len(data))


def verify_folder(folder: Path) -> dict[str, Any]:
    """Every file the manifest lists is there and matches its sha256; returns the manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name, entry in listed_files(manifest, str(folder)).items():
        path = folder / name
        if not path.is_file():
            raise ContractError(f"{folder}: {name} is missing", "missing_file")
        size = path.stat().st_size
        if size != entry.get("bytes", size) or sha256_file(path) != entry["sha256"]:
            raise _mismatch(str(folder), name, size)
    return manifest
