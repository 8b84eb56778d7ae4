"""What every results file under bench/results/ records beside its figures: the commit it measured, when, and
how busy the machine was. The machines these run on are shared, and a figure without its code and its load
cannot be compared with the next run's.

Shared by every bench script and the reliability suite (tests/reliability/reliability_report.py); checked on
every committed results file by tests/bench/test_results_provenance.py. Standard library only.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Written by the runs themselves: an earlier run's uncommitted results are not a change to the code measured.
NOT_CODE = ("bench/results/", "README.md")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def git(*args: str) -> str | None:
    """`git <args>` in this repository, or None where there is no git or no repository (an exported tree)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def provenance() -> dict[str, Any]:
    """The commit checked out (and the tracked files changed since it, if any), the UTC time, the machine and
    its load averages over the last 1, 5 and 15 minutes. Call it when the run ends: the 5- and 15-minute
    averages then cover the run itself."""
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") or ""
    changed = sorted(line[3:] for line in status.splitlines() if not line[3:].startswith(NOT_CODE))
    return {
        "commit": commit.strip() if commit else "unknown",
        "uncommitted_changes": changed,
        "measured_at": datetime.now(UTC).strftime(TIME_FORMAT),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": [round(load, 2) for load in os.getloadavg()],
        },
    }


def problems(record: dict[str, Any]) -> list[str]:
    """What a results record lacks of `provenance()`'s answer, or has malformed; empty when it is whole."""
    found = []
    if not re.fullmatch(r"[0-9a-f]{40}", str(record.get("commit"))):
        found.append(f"commit: {record.get('commit')!r} is not a full commit id")
    if not isinstance(record.get("uncommitted_changes"), list):
        found.append("uncommitted_changes: missing (a list, empty when the tree was clean)")
    try:
        datetime.strptime(str(record.get("measured_at")), TIME_FORMAT)
    except ValueError:
        when = record.get("measured_at")
        found.append(f"measured_at: {when!r} is not a UTC time like 2026-12-07T12:00:00Z")
    machine = record.get("machine") or {}
    load = machine.get("load_average")
    if not (isinstance(load, list) and load and all(isinstance(x, int | float) and x >= 0 for x in load)):
        found.append(f"machine.load_average: {load!r} is not a list of load averages")
    if not isinstance(machine.get("cpus"), int):
        found.append("machine.cpus: missing")
    return found
