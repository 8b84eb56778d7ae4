"""Reading `current.json`, the pointer to the served version (replaced atomically, last, by the pipeline)."""

import json
from pathlib import Path

from penguins_contract.errors import ContractError
from penguins_contract.layout import CURRENT_FILE, VERSION_PATTERN


def read_current(artifacts_dir: Path) -> str | None:
    """The promoted version id, or None before the first promotion; ContractError (reason "current_json")
    for a file that is unreadable, not `{"version": "<id>"}`, or names something that is not a version id."""
    path = Path(artifacts_dir) / CURRENT_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ContractError(f"cannot read {path}: {err}", "current_json") from err
    try:
        version = json.loads(raw)["version"]
    except (ValueError, KeyError, TypeError) as err:
        raise ContractError(f'{path} is not {{"version": "<id>"}}: {err!r}', "current_json") from err
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise ContractError(f"{path} names {version!r}, not a version id", "current_json")
    return version
