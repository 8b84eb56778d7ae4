"""The native stack's memory as `make run` runs it, MLflow included: the PSS of every process the supervisor
starts (and its own), per component, once the stack is up with nothing running (DAGs paused), then at its
peak while the first training runs once they are unpaused, and the time that training takes to serve. Then,
on the running stack, the registry's figures: how long `make sweep` takes, and how long an API in
MODEL_REGISTRY=mlflow takes to serve the version the `champion` alias is moved to (as a click in MLflow's UI).

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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from free_port import free_port
from provenance import provenance

from app.schemas import EXAMPLE_PENGUIN
from penguins_contract import registry

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


def unpause(airflow: str) -> None:
    """As a user's click in the UI: data_pipeline (@once) runs, train_pipeline follows on its Asset."""
    login = {"username": "admin", "password": "admin"}
    token = httpx.post(f"{airflow}/auth/token", json=login, timeout=30).json()["access_token"]
    for dag in ("data_pipeline", "train_pipeline"):
        answer = httpx.patch(
            f"{airflow}/api/v2/dags/{dag}",
            json={"is_paused": False},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        answer.raise_for_status()


def served_version(api: str) -> str | None:
    try:
        answer = httpx.post(f"{api}/predict", json=EXAMPLE_PENGUIN, timeout=10)
    except httpx.HTTPError:
        return None
    return str(answer.json()["model_version"]) if answer.status_code == 200 else None


def wait_for(what: str, check: Any, timeout: float) -> float:
    """Seconds until `check()` is true, polled often enough for a figure in hundredths of a second."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"no {what} within {timeout:.0f} s")
        time.sleep(0.05)
    return round(time.monotonic() - start, 2)


def sweep_s(env: dict[str, str], mlflow: str) -> float:
    """`make sweep`'s work against the stack's server: every variation recorded, the best registered."""
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "penguins_pipeline.training.sweep"],
        env=env | {"MLFLOW_TRACKING_URI": mlflow},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return round(time.monotonic() - start, 1)


def alias_move_to_served_s(env: dict[str, str], mlflow: str, state: Path) -> float:
    """An API following the registry (no artifacts folder of its own), the `champion` alias moved to another
    registered version over REST: the seconds until that version answers."""
    rest = httpx.Client(base_url=f"{mlflow}/api/2.0/mlflow", timeout=30)
    search = rest.get("/model-versions/search", params={"filter": f"name = '{registry.REGISTERED_MODEL}'"})
    versions = {v["version"]: v for v in search.json()["model_versions"]}
    champion = rest.get(
        "/registered-models/alias", params={"name": registry.REGISTERED_MODEL, "alias": registry.CHAMPION}
    ).json()["model_version"]["version"]
    target = next(number for number in versions if number != champion)
    target_version = {t["key"]: t["value"] for t in versions[target]["tags"]}[registry.TAG_VERSION]
    port = str(free_port())
    api = f"http://127.0.0.1:{port}"
    follower_env = env | {
        "API_PORT": port,
        "MODEL_REGISTRY": "mlflow",
        "MLFLOW_TRACKING_URI": mlflow,
        "ARTIFACTS_DIR": str(state / "no-artifacts"),
        "PREDICTIONS_LOG": "false",
    }
    follower = subprocess.Popen([sys.executable, "-m", "app"], env=follower_env, stdout=subprocess.DEVNULL)
    try:
        wait_for("champion served by the registry-following API", lambda: served_version(api), 300)
        moved = rest.post(
            "/registered-models/alias",
            json={"name": registry.REGISTERED_MODEL, "alias": registry.CHAMPION, "version": target},
        )
        moved.raise_for_status()
        return wait_for("the moved alias served", lambda: served_version(api) == target_version, 120)
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=60)


def measure(state: Path, timeout: float = 900.0, settle_s: float = 20.0) -> dict[str, Any]:
    ports = {name: str(free_port()) for name in ("API_PORT", "AIRFLOW_PORT", "MLFLOW_PORT")}
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_STATE} | ports
    env |= {
        "AIRFLOW_HOME": str(state / "airflow"),
        "STACK_LOG_DIR": str(state / "logs"),
        "STACK_MLFLOW_DIR": str(state / "mlflow"),
        "ARTIFACTS_DIR": str(state / "artifacts"),
        "PENGUINS_DB_URL": f"sqlite:///{state / 'penguins.db'}",
        "PREDICTIONS_DIR": str(state / "predictions"),
        "DAGS_ARE_PAUSED_AT_CREATION": "true",
    }
    api = f"http://127.0.0.1:{ports['API_PORT']}"
    with open(state / "supervisor.out", "wb") as out:
        supervisor_argv = [sys.executable, str(REPO / "scripts" / "run_stack.py")]
        process = subprocess.Popen(supervisor_argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    supervisor = psutil.Process(process.pid)
    start = time.monotonic()
    peak: dict[str, float] = {}
    first_prediction_s = None
    registry_figures: dict[str, float | None] = {"sweep_s": None, "alias_move_to_served_s": None}
    try:
        while "The stack is up" not in (state / "supervisor.out").read_text():
            if process.poll() is not None or time.monotonic() - start > timeout:
                said = (state / "supervisor.out").read_text(errors="replace").splitlines()[-15:]
                raise SystemExit("the stack did not come up; the supervisor said:\n" + "\n".join(said))
            time.sleep(1.0)
        up_s = round(time.monotonic() - start, 1)
        time.sleep(settle_s)
        samples = []
        for _ in range(5):
            samples.append(sample(supervisor))
            time.sleep(2.0)
        idle = min(samples, key=lambda s: sum(s.values()))
        processes = len(supervisor.children(recursive=True)) + 1
        unpause(f"http://127.0.0.1:{ports['AIRFLOW_PORT']}")
        start = time.monotonic()
        # The peak while training; on a machine too busy to finish in time, the peak seen until then.
        while time.monotonic() - start < timeout and process.poll() is None:
            now = sample(supervisor)
            if sum(now.values()) > sum(peak.values()):
                peak = now
            if served(api):
                first_prediction_s = round(time.monotonic() - start, 1)
                break
            time.sleep(1.0)
        if first_prediction_s is not None:
            mlflow = f"http://127.0.0.1:{ports['MLFLOW_PORT']}"
            registry_figures = {
                "sweep_s": sweep_s(env, mlflow),
                "alias_move_to_served_s": alias_move_to_served_s(env, mlflow, state),
            }
    finally:
        stop_start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        stop_s = round(time.monotonic() - stop_start, 1)
    idle_total = round(statistics.median(sum(s.values()) for s in samples), 1)
    return {
        "up_s": up_s,
        "unpaused_to_first_prediction_s": first_prediction_s,
        # What a user waits for from `make run` on an empty state (the idle sampling above excluded).
        "start_to_first_prediction_s": None
        if first_prediction_s is None
        else round(up_s + first_prediction_s, 1),
        **registry_figures,
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
    results = {**provenance(), "load_average_before": round(load_before, 2), **figures}
    print(json.dumps(results, indent=2), flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0 if max(figures["pss_mb"]["peak_total"], figures["pss_mb"]["idle_total"]) < LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
