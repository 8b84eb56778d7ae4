"""The native stack's memory as `make run` runs it, MLflow included: the PSS of every process the supervisor
starts (and its own), per component, while the first training runs and once the stack has settled; and the
time from an empty state to the first served prediction.

    .venv/bin/python bench/native_stack.py [--results bench/results/native_stack.json]

Runs scripts/run_stack.py from an empty state in a temporary folder, on free ports (never the developer's
.local/ or ports), and stops it with SIGTERM. PSS (proportional set size) charges each shared page to the
processes sharing it in equal parts, so the sum is what the stack takes from the machine; RSS would count the
pages that forked Airflow workers share with their parent once per worker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from free_port import free_port

from app.schemas import EXAMPLE_PENGUIN

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "native_stack.json"
# The bound for the whole native stack with MLflow in it.
LIMIT_MB = 1536
# What a component's first process runs, as its command line shows it, and the name `make run` gives it.
COMPONENTS = [
    ("mlflow", "mlflow"),
    ("-m app", "api"),
    ("api-server", "airflow-apiserver"),
    ("api_server", "airflow-apiserver"),
    ("scheduler", "airflow-scheduler"),
    ("dag-processor", "airflow-dag-processor"),
    ("dag_processor", "airflow-dag-processor"),
]
# Variables of the developer's shell that would point the stack at their own state or servers.
INHERITED_STATE = [
    "AIRFLOW_HOME",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "PENGUINS_DB_URL",
    "ARTIFACTS_DIR",
    "API_URL",
    "PREDICTIONS_DIR",
    "MLFLOW_TRACKING_URI",
]


def component_name(command: list[str]) -> str:
    line = " ".join(command)
    return next((name for marker, name in COMPONENTS if marker in line), "other")


def sample(supervisor: psutil.Process) -> dict[str, float]:
    """PSS in MB now, per component (a child of the supervisor and everything below it)."""
    usage: dict[str, float] = {}

    def add(name: str, process: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error):
            usage[name] = usage.get(name, 0.0) + process.memory_full_info().pss / 2**20

    add("supervisor", supervisor)
    with contextlib.suppress(psutil.Error):
        for child in supervisor.children():
            with contextlib.suppress(psutil.Error):
                name = component_name(child.cmdline())
                for process in [child, *child.children(recursive=True)]:
                    add(name, process)
    return {name: round(mb, 1) for name, mb in sorted(usage.items())}


def served(api: str) -> bool:
    try:
        return httpx.post(f"{api}/predict", json=EXAMPLE_PENGUIN, timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def measure(state: Path, timeout: float = 900.0, settle_s: float = 30.0) -> dict[str, Any]:
    ports = {name: str(free_port()) for name in ("API_PORT", "AIRFLOW_PORT", "MLFLOW_PORT")}
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_STATE} | ports
    env |= {
        "AIRFLOW_HOME": str(state / "airflow"),
        "STACK_LOG_DIR": str(state / "logs"),
        "STACK_MLFLOW_DIR": str(state / "mlflow"),
        "ARTIFACTS_DIR": str(state / "artifacts"),
        "PENGUINS_DB_URL": f"sqlite:///{state / 'penguins.db'}",
        "PREDICTIONS_DIR": str(state / "predictions"),
    }
    api = f"http://127.0.0.1:{ports['API_PORT']}"
    with open(state / "supervisor.out", "wb") as out:
        supervisor_argv = [sys.executable, str(REPO / "scripts" / "run_stack.py")]
        process = subprocess.Popen(supervisor_argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    supervisor = psutil.Process(process.pid)
    start = time.monotonic()
    peak: dict[str, float] = {}
    try:
        while not served(api):
            if process.poll() is not None or time.monotonic() - start > timeout:
                raise SystemExit(f"no served prediction; see {state}/logs and supervisor.out")
            now = sample(supervisor)
            if sum(now.values()) > sum(peak.values()):
                peak = now
            time.sleep(1.0)
        first_prediction_s = round(time.monotonic() - start, 1)
        # The training run ends (prune, warmup) after the promotion that served the prediction: let it.
        time.sleep(settle_s)
        samples = []
        for _ in range(5):
            samples.append(sample(supervisor))
            time.sleep(2.0)
        idle = min(samples, key=lambda s: sum(s.values()))
        processes = len(supervisor.children(recursive=True)) + 1
    finally:
        stop_start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        stop_s = round(time.monotonic() - stop_start, 1)
    idle_total = round(statistics.median(sum(s.values()) for s in samples), 1)
    return {
        "first_prediction_s": first_prediction_s,
        "pss_mb": {
            "idle_total": idle_total,
            "peak_total": round(sum(peak.values()), 1),
            "limit": LIMIT_MB,
            "idle_by_component": idle,
            "peak_by_component": peak,
        },
        "processes_idle": processes,
        "stop_s": stop_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-native-") as folder:
        figures = measure(Path(folder))
    results = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        **figures,
    }
    print(json.dumps(results, indent=2), flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0 if figures["pss_mb"]["peak_total"] < LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
