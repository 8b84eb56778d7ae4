"""Every results file says what it measured: the commit, the date and how busy the shared machine was
(scripts/provenance.py), so a figure can be traced to its code and weighed against its load."""

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from provenance import TIME_FORMAT, problems, provenance

REPO = Path(__file__).resolve().parents[2]
RESULTS = sorted((REPO / "bench" / "results").rglob("*.json"))
# Files whose top-level entries are measured one at a time (`bench/pipeline_scale.py --stage`): each says.
PER_PART = {"pipeline_scale.json"}


def records(path: Path) -> dict[str, dict]:
    results = json.loads(path.read_text())
    return dict(results) if path.name in PER_PART else {path.name: results}


def is_commit(commit: str) -> bool:
    done = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], check=False)
    return done.returncode == 0


def test_there_are_results_files() -> None:
    assert {path.name for path in RESULTS} >= {"serving.json", "vs_mlserver.json", "reliability.json"}


@pytest.mark.parametrize("path", RESULTS, ids=[path.name for path in RESULTS])
def test_every_results_file_records_its_commit_date_and_load(path: Path) -> None:
    for part, record in records(path).items():
        assert problems(record) == [], part
        assert is_commit(record["commit"]), f"{part}: {record['commit']} is no commit of this repository"
        assert datetime.strptime(record["measured_at"], TIME_FORMAT).replace(tzinfo=UTC) <= datetime.now(UTC)


def test_provenance_names_the_checkout_now() -> None:
    record = provenance()
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert record["commit"] == head
    assert problems(record) == []
    measured = datetime.strptime(record["measured_at"], TIME_FORMAT).replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - measured) < timedelta(minutes=1)
    assert len(record["machine"]["load_average"]) == 3  # over the last 1, 5 and 15 minutes


def test_problems_names_what_a_record_lacks() -> None:
    assert problems({"machine": {"cpus": 2, "python": "3.11", "load_average": [1.2]}}) == [
        "commit: None is not a full commit id",
        "uncommitted_changes: missing (a list, empty when the tree was clean)",
        "measured_at: None is not a UTC time like 2026-12-07T12:00:00Z",
    ]
    assert "machine.load_average: None is not a list of load averages" in problems({"machine": {"cpus": 2}})
