"""Drift reports under ARTIFACTS_DIR/reports: written by `monitor_pipeline`, shown by the API's /monitoring.

`reports/<report id>/` holds `drift.json` and `drift.html`; each folder is written under a hidden name and
renamed into place, then `reports/latest.json` (`{"report": "<report id>", ...}`) is replaced atomically,
last. A reader that follows `latest.json` sees a whole report or the previous one, never half of one.
"""

import json
import re
from pathlib import Path

from penguins_contract.errors import ContractError

REPORTS_DIR = "reports"
LATEST_REPORT_FILE = "latest.json"
REPORT_JSON = "drift.json"
REPORT_HTML = "drift.html"
# A report id is the Airflow run id made filename-safe: letters, digits, "._-", never starting with a dot.
REPORT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


def report_id(run_id: str) -> str:
    """The folder name of a run's report: every character outside [A-Za-z0-9._-] becomes "_"."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)[:255]
    return f"_{safe[1:]}" if safe.startswith(".") else safe or "_"


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
