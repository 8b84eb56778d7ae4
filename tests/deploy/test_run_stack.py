"""The native supervisor's own behaviour with real processes and sockets (whole stack: test_e2e_native)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import psutil
import pytest
from free_port import free_port

from app.core.config import Settings

REPO = Path(__file__).resolve().parents[2]


def run_supervisor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    state = {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "STACK_LOG_DIR": str(tmp_path / "logs"),
        "STACK_MLFLOW_DIR": str(tmp_path / "mlflow"),
    }
    # A tracking URI of the developer's shell would mean: start no MLflow server, check no MLFLOW_PORT.
    inherited = {name: value for name, value in os.environ.items() if name != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_stack.py")],
        env={**inherited, **state, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("busy", ["AIRFLOW_PORT", "API_PORT", "MLFLOW_PORT"])
def test_a_port_in_use_is_a_clear_message_and_nothing_starts(tmp_path: Path, busy: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = {name: str(free_port()) for name in ("AIRFLOW_PORT", "API_PORT", "MLFLOW_PORT")}
        ports[busy] = str(port)
        result = run_supervisor(tmp_path, **ports)
    assert result.returncode == 1
    assert f"port {port} on " in result.stderr and "already in use" in result.stderr
    assert f"{busy}={port + 1} make run" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "logs").exists(), "nothing may start before the ports are checked"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"API_PORT": "80a"}, "API_PORT='80a' is not a TCP port"),
        ({"AIRFLOW_PORT": "70000"}, "AIRFLOW_PORT='70000' is not a TCP port"),
        ({"AIRFLOW_PORT": "18000", "API_PORT": "18000"}, "AIRFLOW_PORT and API_PORT are both 18000"),
        ({"MLFLOW_PORT": "5o00"}, "MLFLOW_PORT='5o00' is not a TCP port"),
        ({"API_PORT": "18000", "MLFLOW_PORT": "18000"}, "API_PORT and MLFLOW_PORT are both 18000"),
    ],
)
def test_bad_settings_are_clear_messages(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = run_supervisor(tmp_path, **env)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_child_environment_matches_compose(run_stack: ModuleType) -> None:
    env = {"AIRFLOW_PORT": "18080", "API_PORT": "18000", "ARTIFACTS_DIR": "my-artifacts", "PYTHONPATH": "/x"}
    config = run_stack.StackConfig.from_env(env)
    child = run_stack.child_environment(config, env)
    assert child["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert child["API_URL"] == "http://127.0.0.1:18000"
    assert child["API_PORT"] == "18000"
    # Training and the API reach the MLflow server the supervisor starts, on loopback, under .local/.
    assert child["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert (config.own_mlflow, config.mlflow_dir) == (True, REPO / ".local" / "mlflow")
    # Task processes run in other working directories: a relative folder is made absolute from the repo.
    assert child["ARTIFACTS_DIR"] == str(REPO / "my-artifacts")
    # The API writes the prediction log where monitor_pipeline's task processes read it.
    assert child["PREDICTIONS_DIR"] == str(REPO / ".local" / "predictions")
    assert child["PYTHONPATH"].split(os.pathsep) == [
        f"{REPO}/contract",
        f"{REPO}/airflow/include",
        f"{REPO}/api",
        "/x",
    ]
    assert child["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert child["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert child["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "false"
    assert child["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert config.airflow_home == REPO / ".local" / "airflow"


def test_explicit_airflow_settings_win(run_stack: ModuleType) -> None:
    env = {"AIRFLOW__CORE__PARALLELISM": "2", "DAGS_ARE_PAUSED_AT_CREATION": "true", "API_URL": ""}
    child = run_stack.child_environment(run_stack.StackConfig.from_env(env), env)
    assert child["AIRFLOW__CORE__PARALLELISM"] == "2"
    assert child["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "true"
    assert child["API_URL"] == "", "an empty API_URL means: no warmup call"


@pytest.mark.parametrize("uri", ["", "http://tracking.example:5000"])
def test_a_tracking_uri_of_the_user_starts_no_mlflow_server(run_stack: ModuleType, uri: str) -> None:
    """Empty: no tracking at all; a URL: the user's own server. Either way MLFLOW_PORT is not bound here."""
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_PORT": "8000"}
    config = run_stack.StackConfig.from_env(env)
    assert config.own_mlflow is False
    assert "MLFLOW_PORT" not in config.ports(), "the API's port 8000 is no conflict then"
    assert run_stack.child_environment(config, env)["MLFLOW_TRACKING_URI"] == uri


def test_the_api_listens_on_loopback_like_airflow_unless_told(
    run_stack: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no WARMUP_TOKEN anyone reaching the API may call /warmup: off the network unless asked."""
    monkeypatch.delenv("API_HOST", raising=False)
    assert Settings().api_host == "127.0.0.1", "`make api` and the supervisor's API child"
    config = run_stack.StackConfig.from_env({})
    assert (config.api_host, config.airflow_host) == ("127.0.0.1", "127.0.0.1")
    assert run_stack.child_environment(config, {})["API_HOST"] == "127.0.0.1"

    opened = run_stack.StackConfig.from_env({"API_HOST": "0.0.0.0"})
    assert run_stack.child_environment(opened, {})["API_HOST"] == "0.0.0.0"
    assert opened.api_url == "http://127.0.0.1:8000"


def test_the_airflow_signing_keys_are_long_enough_and_kept(run_stack: ModuleType, tmp_path: Path) -> None:
    """Airflow's own 24-byte keys make PyJWT warn (InsecureKeyLengthWarning): HS512 wants 64 bytes."""
    config = run_stack.StackConfig.from_env({"AIRFLOW_HOME": str(tmp_path)})
    keys = run_stack.signing_keys(config)
    assert set(keys) == {"AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"}
    assert min(len(key.encode()) for key in keys.values()) >= 64
    assert len(set(keys.values())) == 2
    assert run_stack.signing_keys(config) == keys, "a restart keeps them, and the UI logged in"
    assert {(tmp_path / name).stat().st_mode & 0o777 for name in run_stack.SIGNING_KEYS.values()} == {0o600}


def wait_for_children(process: psutil.Process, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 20
    while len(children := process.children(recursive=True)) < count:
        assert time.monotonic() < deadline, "the test processes did not start"
        time.sleep(0.05)
    return children


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_leaves_no_process_even_a_stubborn_or_detached_one(
    run_stack: ModuleType, tmp_path: Path
) -> None:
    sleeper = "import time; time.sleep(600)"
    # A child that left the process group (as a detached task runner would) and a parent ignoring SIGTERM.
    detaching = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"subprocess.Popen([sys.executable, '-c', {sleeper!r}], start_new_session=True); time.sleep(600)"
    )
    polite = run_stack.Component("polite", [sys.executable, "-c", sleeper], tmp_path / "polite.log")
    stubborn = run_stack.Component("stubborn", [sys.executable, "-c", detaching], tmp_path / "stubborn.log")
    for component in (polite, stubborn):
        component.start(os.environ)
    detached = wait_for_children(psutil.Process(stubborn.process.pid), 1)[0]
    stubborn.remember_descendants()

    run_stack.terminate([polite, stubborn])

    assert polite.process.returncode == -15
    assert stubborn.process.returncode == -9
    assert gone(detached.pid)


def test_a_stop_stops_the_servers_after_the_scheduler_and_ends_within_the_budget(
    run_stack: ModuleType, tmp_path: Path
) -> None:
    """Airflow's way, with real processes: on SIGTERM the scheduler forwards it to its task (in a process
    group of its own) and waits for it. A task that runs on regardless (Airflow's own handler only calls
    on_kill) cannot hold the stop: the scheduler is killed at FIRST_WAVE_S, the task with it, and only then
    are the api-server and the API (which the task's report and a warmup need) stopped, all within
    STOP_BUDGET_S."""
    task = "import signal, time; signal.signal(signal.SIGTERM, lambda *_: None); time.sleep(600)"
    scheduler = (
        "import signal, subprocess, sys\n"
        f"task = subprocess.Popen([sys.executable, '-c', {task!r}], process_group=0)\n"
        "signal.signal(signal.SIGTERM, lambda *_: task.send_signal(signal.SIGTERM))\n"
        "task.wait()\n"
    )
    server = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('stopped', time.time(), flush=True), sys.exit(0)))\n"
        "time.sleep(600)\n"
    )
    first = run_stack.Component("scheduler", [sys.executable, "-c", scheduler], tmp_path / "scheduler.log")
    last = run_stack.Component("api", [sys.executable, "-c", server], tmp_path / "api.log", stop_last=True)
    for component in (first, last):
        component.start(os.environ)
    (task_process,) = wait_for_children(psutil.Process(first.process.pid), 1)
    time.sleep(0.5)  # every handler installed

    started, started_at = time.monotonic(), time.time()
    run_stack.terminate([first, last])
    took = time.monotonic() - started

    assert first.process.returncode == -9, "the scheduler waited for its task: killed at the deadline"
    assert gone(task_process.pid)
    assert last.process.returncode == 0, "the servers stop on their SIGTERM"
    stopped_at = float(last.log.read_text().splitlines()[-1].split()[1])
    assert stopped_at >= started_at + run_stack.FIRST_WAVE_S, "the API was stopped while the scheduler ran"
    assert took < run_stack.STOP_BUDGET_S + 1
