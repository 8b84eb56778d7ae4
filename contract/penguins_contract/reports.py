"""Drift reports under ARTIFACTS_DIR/reports: written by `monitor_pipeline`, shown by the API's /monitoring.

`reports/<report id>/` holds `drift.json` and `drift.html`; each folder is written under a hidden name and
renamed into place under a name no earlier attempt used, then `reports/latest.json` (`{"report": "<report
id>", ...}`) is replaced atomically, last; older folders are pruned after that. A reader that follows
`latest.json` sees a whole report or the previous one, never half of one and never a folder that is gone.
"""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from penguins_contract.errors import ContractError

REPORTS_DIR = "reports"
LATEST_REPORT_FILE = "latest.json"
REPORT_JSON = "drift.json"
REPORT_HTML = "drift.html"
# Any report folder name the API follows: letters, digits, "._-", never starting with a dot (the names of
# earlier releases, `<run id>`, included).
REPORT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")
# The names written now: `<UTC publish time to the microsecond>-<run id made filename-safe>`.
PUBLISHED_REPORT_PATTERN = re.compile(r"(?P<published>[0-9]{8}T[0-9]{12}Z)-(?P<run>[A-Za-z0-9._-]*)")
# Room left for the hidden staging name (prefix and random tag) under the usual 255-byte name limit.
MAX_REPORT_ID = 200


def report_id(run_id: str, published: datetime) -> str:
    """The folder name of one attempt at a run's report: its publish time, then the run id with every
    character outside [A-Za-z0-9._-] made "_". Each attempt gets a new name, so a retry never replaces the
    folder `latest.json` names; the names sort by time."""
    stamp = published.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    return f"{stamp}-{safe}"[:MAX_REPORT_ID]


def report_run(name: str) -> str | None:
    """The (filename-safe) run id a report folder was published for, or None for another name."""
    match = PUBLISHED_REPORT_PATTERN.fullmatch(name)
    return match["run"] if match else None


def latest_report(artifacts_dir: Path) -> Path | None:
    """The folder of the newest report, or None before the first; ContractError (reason "latest_report") for a
    `latest.json` that is unreadable or names no report folder."""
    path = Path(artifacts_dir) / REPORTS_DIR / LATEST_REPORT_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ContractError(f"cannot read {path}: {err}", "latest_report") from err
    try:
        name = json.loads(raw)["report"]
    except (ValueError, KeyError, TypeError) as err:
        raise ContractError(f'{path} is not {{"report": "<report id>"}}: {err!r}', "latest_report") from err
    if not isinstance(name, str) or not REPORT_ID_PATTERN.fullmatch(name):
        raise ContractError(f"{path} names {name!r}, not a report id", "latest_report")
    folder = path.parent / name
    if not folder.is_dir():
        raise ContractError(f"{path} names {name}, but {folder} does not exist", "latest_report")
    return folder
