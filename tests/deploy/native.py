"""The native stack as the deployment tests drive it: `scripts/run_stack.py` (what `make run` starts) in a
process of its own, HTTP clients for its API and its Airflow REST API, and the polling that fails with the
component logs. Shared by test_e2e_native.py and test_e2e_feedback_loop.py (their `native_env` fixture,
in conftest.py, is `native_environment` in the test's folder)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
from free_port import free_port

from app.schemas import EXAMPLE_PENGUIN

REPO = Path(__file__).resolve().parents[2]
DAGS = ["data_pipeline", "train_pipeline"]
TRAIN_TIMEOUT_S = 600.0
# Variables of the developer's shell that would point the stack at their own state instead of the test's.
INHERITED_STATE = {
    *["AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "PENGUINS_DB_URL", "ARTIFACTS_DIR", "API_URL"],
    *["WARMUP_TOKEN", "STACK_LOG_DIR", "AIRFLOW_PORT", "API_PORT", "PREDICTIONS_DIR"],
    *["MLFLOW_TRACKING_URI", "MLFLOW_PORT", "STACK_MLFLOW_DIR"],
}


def native_environment(folder: Path) -> dict[str, str]:
    """The environment of a native stack on free ports with all of its state under `folder`."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_STATE}
    return {
        **env,
        "AIRFLOW_HOME": str(folder / "airflow"),
        "STACK_LOG_DIR": str(folder / "logs"),
        "ARTIFACTS_DIR": str(folder / "artifacts"),
        "PENGUINS_DB_URL": f"sqlite:///{folder / 'penguins.db'}",
        "PREDICTIONS_DIR": str(folder / "predictions"),
        "AIRFLOW_PORT": str(free_port()),
        "API_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "STACK_MLFLOW_DIR": str(folder / "mlflow"),
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float, stack: "NativeStack") -> Any:
    """Poll until `check` returns something truthy; fail with the component logs if the stack died."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert stack.process.poll() is None, (
            f"the supervisor exited while waiting for {what}\n{stack.report()}"
        )
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s\n{stack.report()}"
        time.sleep(1.0)


@dataclass
class NativeStack:
    """One supervisor process and HTTP clients for the API and the Airflow REST API it serves."""

    env: dict[str, str]
    state: Path
    process: subprocess.Popen[bytes] = field(init=False)
    started_at: float = field(init=False)

    def start(self) -> None:
        self.output = self.state / f"supervisor-{time.monotonic_ns()}.out"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "scripts" / "run_stack.py")],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started_at = time.monotonic()
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.env['API_PORT']}", timeout=10)
        self.airflow = httpx.Client(base_url=f"http://127.0.0.1:{self.env['AIRFLOW_PORT']}", timeout=30)

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def api_pid(self) -> int:
        (api,) = [p.pid for p in self.tree() if command(p)[-2:] == ["-m", "app"]]
        return api

    def prediction(self) -> dict[str, Any] | None:
        try:
            response = self.api.post("/predict", json=EXAMPLE_PENGUIN)
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    def login(self) -> None:
        response = self.airflow.post("/auth/token", json={"username": "admin", "password": "admin"})
        assert response.status_code in (200, 201), response.text
        self.airflow.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        response = self.airflow.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "run_after"})
        if response.status_code == 404:
            return []  # the dag-processor has not parsed the file yet
        assert response.status_code == 200, response.text
        return response.json()["dag_runs"]

    def run_dag(self, dag_id: str, timeout: float = 300) -> dict[str, Any]:
        """Trigger a run through the REST API, as the UI does; the run once it ended."""
        response = self.airflow.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
        assert response.status_code == 200, response.text
        run_id = response.json()["dag_run_id"]

        def ended() -> dict[str, Any] | None:
            (run,) = [r for r in self.dag_runs(dag_id) if r["dag_run_id"] == run_id]
            return run if run["state"] in ("success", "failed") else None

        run: dict[str, Any] = wait_for(f"{dag_id} run", ended, timeout, self)
        return run

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Task id -> state (None: not scheduled yet) of every task of that run."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        response = self.airflow.get(path)
        assert response.status_code == 200, response.text
        return {ti["task_id"]: ti["state"] for ti in response.json()["task_instances"]}

    def running_task(self, dag_id: str, run_id: str) -> str | None:
        """The id of a task of that run that is running now, if any."""
        running = [task for task, state in self.task_states(dag_id, run_id).items() if state == "running"]
        return running[0] if running else None

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """What that task logged, every try, as Airflow wrote it under AIRFLOW_HOME."""
        folder = Path(self.env["AIRFLOW_HOME"]) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        tries = sorted((folder / f"task_id={task_id}").glob("*.log"))
        assert tries, f"no log of {dag_id} {run_id} {task_id} in {folder}"
        return "".join(log.read_text(errors="replace") for log in tries)

    def assert_no_failed_run(self) -> None:
        """Fail at once when a DAG run failed: no use waiting out a timeout for a model that will not come."""
        failed = [run["dag_run_id"] for dag in DAGS for run in self.dag_runs(dag) if run["state"] == "failed"]
        assert failed == [], f"{failed} failed\n{self.report()}"

    def trained_prediction(self) -> dict[str, Any] | None:
        """A prediction once a model is served (the DAG runs are checked once Airflow answers)."""
        with contextlib.suppress(httpx.TransportError):
            if "Authorization" not in self.airflow.headers:
                self.login()
            self.assert_no_failed_run()
        return self.prediction()

    def stop(self) -> int:
        """SIGTERM, as `kill` or a service manager would send; Ctrl-C takes the same path (SIGINT)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)

    def assert_stopped_clean(self) -> None:
        """The supervisor exited 0, and no task was killed by its own worker (Airflow's escalation when a task
        cannot report: the sign of an api-server stopped before the scheduler)."""
        assert self.stop() == 0, self.report()
        scheduler = (self.state / "logs" / "airflow-scheduler.log").read_text(errors="replace")
        assert "signal_sent=SIGKILL" not in scheduler, self.report()

    def report(self) -> str:
        """The supervisor's output and the end of every component log, for a failing assertion."""
        parts = [self.output.read_text(errors="replace")]
        for log in sorted((self.state / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:]))
        for log in sorted((self.state / "airflow" / "logs").glob("dag_id=*/**/*.log")):
            errors = [x for x in log.read_text(errors="replace").splitlines() if '"level":"error"' in x]
            parts += [f"--- {log.relative_to(self.state)}", *errors[-5:]]
        return "\n".join(parts)


def command(process: psutil.Process) -> list[str]:
    """The command line, or [] for a task process that has just ended."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def alive(process: psutil.Process) -> bool:
    """Still the same process (pid not reused) and not just an unreaped zombie."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
