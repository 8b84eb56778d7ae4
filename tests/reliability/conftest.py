"""The reliability suite attacks the running system (real uvicorn servers, real DAG runs, real MariaDB) and
records what held. Its fast part runs in `make test`; `@pytest.mark.slow` tests only in `make reliability`,
which also writes bench/results/reliability.json (see reliability_report.py)."""

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from reliability_kit import API, SECRETS
from reliability_report import REPORT, RESULTS_ENV

from penguins_pipeline.training import artifacts

TOKEN = f"reliability-{secrets.token_hex(8)}"
SECRETS.add(TOKEN)


@dataclass(frozen=True)
class LiveApi:
    url: str
    folder: Path
    version: str
    token: str


@pytest.fixture(scope="session")
def live_api(tmp_path_factory: pytest.TempPathFactory, versions) -> Iterator[LiveApi]:
    """`python -m app` on a free port, serving the main version, with WARMUP_TOKEN set; tests only read it."""
    folder = tmp_path_factory.mktemp("live") / "artifacts"
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    with API.running_api(folder, WARMUP_TOKEN=TOKEN, API_ACCESS_LOG="false") as url:
        yield LiveApi(url, folder, versions.main, TOKEN)


@pytest.fixture(scope="session")
def figures() -> object:
    """Where tests record what they tried (bench/results/reliability.json)."""
    return REPORT


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
            REPORT.known_bugs[report.nodeid] = report.wasxfail
        REPORT.outcome(report.nodeid, outcome)


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(RESULTS_ENV)
    if target and REPORT.outcomes:
        REPORT.write(Path(target))
