"""Writing files and folders so that no reader ever sees half of one: the one home of the crash-safety rules.

A folder is built under a hidden `STAGING_PREFIX` name, fsynced and renamed into place; a small JSON pointer
(`current.json`, `latest.json`) is written beside itself, fsynced and renamed over the old one, last. Readers
ignore names starting with a dot, and `prune` steps sweep what a killed writer left.
"""

import json
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STAGING_PREFIX = ".tmp-"


def fsync_path(path: Path) -> None:
    """fsync a file or a folder: a rename is durable only once its folder is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def temp_path(path: Path, tag: str) -> Path:
    """Where `write_json_atomically` writes `path` first (hidden, beside it); tag "*" makes the glob."""
    return path.with_name(f".{path.name}.{tag}.tmp")


def write_json_atomically(path: Path, content: Mapping[str, Any]) -> None:
    """Temp file in the same folder, fsync, rename over: a reader sees the old file or the new, never half."""
    tmp = temp_path(path, secrets.token_hex(4))
    try:
        write_file(tmp, json.dumps(content, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


def remove_folder(folder: Path) -> None:
    """Hide it with one rename first, so a reader never opens a half-deleted folder."""
    hidden = folder.with_name(f"{STAGING_PREFIX}deleting-{folder.name}-{secrets.token_hex(4)}")
    os.rename(folder, hidden)
    shutil.rmtree(hidden)
