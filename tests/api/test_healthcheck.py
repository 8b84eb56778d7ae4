"""`python -m app.healthcheck`, the images' health probe, run as the container engine runs it."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from free_port import free_port

API_PATH = os.pathsep.join(str(Path(__file__).resolve().parents[2] / f) for f in ("api", "contract"))


def probe(port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": API_PATH, "API_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "app.healthcheck"], env=env, capture_output=True, text=True, timeout=30
    )


def test_healthy_when_the_api_answers(server: str) -> None:
    assert probe(urlsplit(server).port or 0).returncode == 0


def test_unhealthy_with_the_reason_when_nothing_answers() -> None:
    port = free_port()
    done = probe(port)
    assert done.returncode == 1
    assert f"127.0.0.1:{port}/health" in done.stderr
