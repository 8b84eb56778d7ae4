"""The MLflow tracking server as this project runs it natively: one worker, no job runner, artifacts proxied.

`make run` starts it with the embedded default (a SQLite file and a folder under `.local/mlflow/`); the tests
and benchmarks start their own on a free port with `running()`. Proxied artifacts (`--serve-artifacts`) mean
clients log and read artifacts through the server alone, with no storage credentials.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

READY_TIMEOUT_S = 120.0
REPO = Path(__file__).resolve().parents[1]


def command(port: int, backend_uri: str, artifacts_destination: str, host: str = "127.0.0.1") -> list[str]:
    """`mlflow server` with the settings every native run shares; compose passes the same flags."""
    return [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        backend_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_destination,
        "--workers",
        "1",
        # MLflow 3 answers 403 to a Host header it does not allow; the port is compared literally.
        "--allowed-hosts",
        f"localhost:{port},127.0.0.1:{port},mlflow:5000,mlflow",
    ]


def environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """No job runner process (about half the server's memory); no usage reporting (offline)."""
    return {
        **(env if env is not None else os.environ),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def embedded_root(env: Mapping[str, str]) -> Path:
    """The embedded server's folder, STACK_MLFLOW_DIR: relative to the repository, so that `make run` and
    `make pipeline` find the same one whatever their working directory."""
    return (REPO / Path(env.get("STACK_MLFLOW_DIR") or ".local/mlflow").expanduser()).resolve()


def local_paths(root: Path) -> tuple[str, str]:
    """The embedded default under `root` (the repo's `.local/mlflow/`): SQLite backend, artifacts folder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "artifacts").mkdir(exist_ok=True)
    return f"sqlite:///{(root / 'mlflow.db').resolve()}", str((root / "artifacts").resolve())


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode} before it answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"mlflow server did not answer {url}/health within {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def running(
    root: Path, port: int, log: Path | None = None, timeout: float = READY_TIMEOUT_S
) -> Iterator[str]:
    """A real server with the embedded default under `root`, on 127.0.0.1:`port`; yields its URL once it
    answers (within `timeout` seconds: a first start migrates its database, slow on a busy host)."""
    backend, artifacts = local_paths(root)
    url = f"http://127.0.0.1:{port}"
    with open(log or root / "server.log", "ab") as out:
        process = subprocess.Popen(
            command(port, backend, artifacts),
            env=environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(url, process, timeout)
        yield url
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the server's process group (gunicorn/uvicorn children included), SIGKILL after `timeout`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait()
