"""The whole stack natively (`make run`), supervised like docker-compose.yml but without Docker.

Same commands as the compose services: the API (`python -m app`, independent of Airflow, so it serves
the last model at once), the MLflow tracking server (scripts/mlflow_server.py: SQLite and an artifacts folder
under .local/mlflow/), `airflow db migrate`, then `airflow api-server` and `airflow dag-processor`, and once
the api-server and MLflow answer (tasks need the execution API, and training records its runs in MLflow)
`airflow scheduler` (LocalExecutor). Each child runs in its own process group with its log in a file; Ctrl-C
or SIGTERM stops every group within STOP_BUDGET_S (the api-server and the API last: running tasks end and
report through the one while the other still answers a warmup), and whatever a group left behind is killed,
so no process outlives the supervisor.
Settings come from the environment (see the native section of .env.example).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from pathlib import Path

import mlflow_server
import psutil

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The same sub-commands as the compose services of the same names (tests/deploy checks they agree).
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
}
API_MODULE = "app"
START_TIMEOUT_S = 300.0
# Ctrl-C to the last process gone, in every phase (a first training takes minutes): the scheduler's wave
# must be gone FIRST_WAVE_S after the SIGTERM, the rest STOP_BUDGET_S after it, or they are killed.
FIRST_WAVE_S = 2.5
STOP_BUDGET_S = 3.5
# The Airflow settings of the keys every component must share, and the file in AIRFLOW_HOME that keeps each.
SIGNING_KEYS = {"AIRFLOW__API_AUTH__JWT_SECRET": "jwt_secret", "AIRFLOW__API__SECRET_KEY": "secret_key"}


class StackError(Exception):
    """A problem the user can fix (a port in use, a bad setting, a dead component): a message, no trace."""


class StopRequested(Exception):
    """Raised by the SIGINT/SIGTERM handler to unwind start-up or supervision into the clean stop."""


@dataclass(frozen=True)
class StackConfig:
    airflow_home: Path
    log_dir: Path
    airflow_host: str
    airflow_port: int
    api_host: str
    api_port: int
    admin_user: str
    admin_password: str
    mlflow_port: int
    mlflow_dir: Path
    # MLFLOW_TRACKING_URI given by the user (a server of theirs, or empty: no tracking): none is started here.
    own_mlflow: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StackConfig:
        config = cls(
            airflow_home=repo_path(env.get("AIRFLOW_HOME") or ".local/airflow"),
            log_dir=repo_path(env.get("STACK_LOG_DIR") or ".local/logs"),
            airflow_host=env.get("AIRFLOW_HOST") or "127.0.0.1",
            airflow_port=_port(env, "AIRFLOW_PORT", 8080),
            api_host=env.get("API_HOST") or "127.0.0.1",
            api_port=_port(env, "API_PORT", 8000),
            admin_user=env.get("AIRFLOW_ADMIN_USER") or "admin",
            admin_password=env.get("AIRFLOW_ADMIN_PASSWORD") or "admin",
            mlflow_port=_port(env, "MLFLOW_PORT", 5000),
            mlflow_dir=mlflow_server.embedded_root(env),
            own_mlflow="MLFLOW_TRACKING_URI" not in env,
        )
        for first, second in combinations(config.ports().items(), 2):
            if first[1] == second[1]:
                raise StackError(f"{first[0]} and {second[0]} are both {first[1]}: use two ports")
        return config

    def ports(self) -> dict[str, int]:
        """The ports this supervisor binds, by the variable that sets each."""
        ports = {"AIRFLOW_PORT": self.airflow_port, "API_PORT": self.api_port}
        return ports | ({"MLFLOW_PORT": self.mlflow_port} if self.own_mlflow else {})

    @property
    def airflow_url(self) -> str:
        return _local_url(self.airflow_host, self.airflow_port)

    @property
    def api_url(self) -> str:
        return _local_url(self.api_host, self.api_port)

    @property
    def mlflow_url(self) -> str:
        """The server started here listens on loopback only: its UI and REST API have no login."""
        return _local_url("127.0.0.1", self.mlflow_port)

    @property
    def passwords_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"


def _local_url(host: str, port: int) -> str:
    """How this machine reaches a server bound to `host` (a wildcard address is reached on loopback)."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"


def repo_path(value: str) -> Path:
    """Relative paths are relative to the repository: task processes run in other working directories."""
    return (REPO / Path(value).expanduser()).resolve()


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise StackError(f"{name}={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def child_environment(config: StackConfig, env: Mapping[str, str]) -> dict[str, str]:
    """The environment every component gets: the user's, plus what makes the native stack match compose."""
    child = dict(env)
    # The artifact contract, the pipeline package and the API, as the images put them on PYTHONPATH.
    paths = [*(str(REPO / f) for f in ("contract", "airflow/include", "api")), env.get("PYTHONPATH", "")]
    child["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    child["AIRFLOW_HOME"] = str(config.airflow_home)
    child.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "airflow" / "dags"))
    child.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    child.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    # 4 pre-forked LocalExecutor workers instead of 32: the two small DAGs need no more; each holds memory.
    child.setdefault("AIRFLOW__CORE__PARALLELISM", env.get("AIRFLOW_PARALLELISM") or "4")
    paused = env.get("DAGS_ARE_PAUSED_AT_CREATION") or "false"
    child.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", paused)
    child["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{config.airflow_url}/execution/"
    child["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{config.admin_user}:admin"
    child["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(config.passwords_file)
    child["API_HOST"] = config.api_host
    child["API_PORT"] = str(config.api_port)
    child.setdefault("API_URL", config.api_url)
    child["ARTIFACTS_DIR"] = str(repo_path(env.get("ARTIFACTS_DIR") or "artifacts"))
    # The API writes its prediction log there, monitor_pipeline (an Airflow task) reads it: one folder.
    child["PREDICTIONS_DIR"] = str(repo_path(env.get("PREDICTIONS_DIR") or ".local/predictions"))
    # Training records its runs there, and the API may follow the registry (MODEL_REGISTRY=mlflow).
    child.setdefault("MLFLOW_TRACKING_URI", config.mlflow_url)
    return child


def check_port_free(host: str, port: int, variable: str) -> None:
    """Fail before starting anything, with the variable to change, rather than with a server's traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StackError(
                f"port {port} on {host} is already in use ({error.strerror}): stop what holds it, "
                f"or choose another port, e.g. `{variable}={port + 1} make run`"
            ) from None


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET; (0, b"") while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return 0, b""


def airflow_health(config: StackConfig) -> dict[str, str | None]:
    """Status per Airflow component; /api/v2/monitor/health answers 200 even when one is down."""
    status, body = http_get(f"{config.airflow_url}/api/v2/monitor/health")
    if status != 200:
        return {}
    try:
        return {name: part.get("status") for name, part in json.loads(body).items() if isinstance(part, dict)}
    except (ValueError, AttributeError):
        return {}


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    stop_last: bool = False
    process: subprocess.Popen[bytes] | None = None
    descendants: dict[int, psutil.Process] = field(default_factory=dict)

    def start(self, env: Mapping[str, str]) -> None:
        with open(self.log, "ab") as log:
            stamp = datetime.now().isoformat(timespec="seconds")
            log.write(f"\n===== {stamp} {' '.join(self.argv)}\n".encode())
            log.flush()
            # Its own session: the terminal's Ctrl-C reaches only the supervisor, which then stops them all.
            self.process = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def started(self) -> subprocess.Popen[bytes]:
        """The process that start() started."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def remember_descendants(self) -> None:
        """Record the children now: ones that moved to another process group are killed by pid at stop."""
        if self.running():
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(self.started.pid).children(recursive=True)
                self.descendants |= {child.pid: child for child in children}

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def terminate(components: list[Component]) -> None:
    """SIGTERM the process groups in two waves, then SIGKILL whatever is left (groups and strays), all within
    STOP_BUDGET_S.

    The ones marked `stop_last` (the api-server and the API) go in the second wave. On SIGTERM the scheduler
    forwards it to its running tasks and waits for them; each ends at once (penguins_pipeline.task_runner:
    a failure Airflow retries at the next start, the warmup a success, so a stop never fails a run whose
    model is promoted) and reports through the api-server's execution API, while the warmup's API call
    still gets its answer: both stay up until the scheduler is gone."""
    start = time.monotonic()
    first = [c for c in components if not c.stop_last]
    _signal_all(first, signal.SIGTERM)
    _kill_late(first, start + FIRST_WAVE_S)
    last = [c for c in components if c.stop_last]
    _signal_all(last, signal.SIGTERM)
    _kill_late(last, start + STOP_BUDGET_S)
    strays: list[psutil.Process] = []
    for component in components:
        if component.process is None:
            continue
        _signal_group(component, signal.SIGKILL)
        component.process.wait()
        strays += component.descendants.values()
    for stray in strays:
        # psutil checks the process is still the one recorded (not a reused pid) before it signals.
        with contextlib.suppress(psutil.Error):
            stray.kill()
    # Dead once a zombie: their parents are gone and whoever adopts them may reap them late (psutil's
    # wait_procs waited its whole timeout for such ones, past the stop's budget).
    deadline = time.monotonic() + 1.0
    while any(_alive(stray) for stray in strays) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_all(components: list[Component], signum: int) -> None:
    for component in components:
        if component.running():
            component.remember_descendants()
            _signal_group(component, signum)


def _wait_all(components: list[Component], deadline: float) -> bool:
    """Whether every one of them has exited by `deadline` (monotonic)."""
    for component in components:
        if component.process is not None:
            try:
                component.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
    return True


def _kill_late(components: list[Component], deadline: float) -> None:
    """Wait until `deadline`, then SIGKILL the groups still up, saying which."""
    if _wait_all(components, deadline):
        return
    for component in components:
        if component.running():
            print(f"  {component.name} still up after SIGTERM: killing it", flush=True)
            _signal_group(component, signal.SIGKILL)


def _signal_group(component: Component, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(component.started.pid, signum)


class Stack:
    """The started components, in start order; `stop` is safe to call at any point of start-up."""

    def __init__(self, config: StackConfig, env: Mapping[str, str]) -> None:
        self.config = config
        self.env = child_environment(config, env)
        self.components: list[Component] = []

    def component(
        self, name: str, argv: list[str], stop_last: bool = False, env: Mapping[str, str] | None = None
    ) -> Component:
        component = Component(name, argv, self.config.log_dir / f"{name}.log", stop_last)
        component.start(self.env if env is None else env)
        self.components.append(component)
        return component

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for component in self.components:
                if not component.running():
                    raise StackError(self.died_message(component))
            if time.monotonic() > deadline:
                raise StackError(f"no {what} within {timeout:.0f} s; see the logs in {self.config.log_dir}")
            time.sleep(0.5)

    def run_once(self, name: str, argv: list[str]) -> None:
        """A one-shot command, tracked like the servers so that Ctrl-C stops it too."""
        component = self.component(name, argv)
        code = component.started.wait()
        self.components.remove(component)
        if code != 0:
            raise StackError(self.died_message(component))

    def died_message(self, component: Component) -> str:
        code = component.process.returncode if component.process else None
        return (
            f"{component.name} exited (code {code}); its log is {component.log}. Last lines:\n"
            f"{component.log_tail()}"
        )

    def stop(self) -> None:
        terminate(self.components)


def write_private(path: Path, text: str) -> None:
    """Readable by this user only, and whole or absent: never a half-written secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(text)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def write_login(config: StackConfig) -> None:
    """SimpleAuthManager reads the admin password from this file (it would otherwise invent one)."""
    write_private(config.passwords_file, json.dumps({config.admin_user: config.admin_password}))


def signing_keys(config: StackConfig) -> dict[str, str]:
    """Airflow signs its tokens with HS512, which wants 64-byte keys, but generates 24-byte ones
    (InsecureKeyLengthWarning): 64 random bytes each, as compose's airflow-init makes, kept in AIRFLOW_HOME
    so that a restart keeps the UI logged in."""
    keys: dict[str, str] = {}
    for variable, name in SIGNING_KEYS.items():
        path = config.airflow_home / name
        if not path.exists():
            write_private(path, secrets.token_urlsafe(64))
        keys[variable] = path.read_text()
    return keys


def describe_db(url: str | None, default: str) -> str:
    if not url:
        return default
    from sqlalchemy.engine import make_url  # only to hide the password in what we print

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is the component's error to report, not ours
        return "(unparsable URL)"


def print_settings(stack: Stack) -> None:
    env, home = stack.env, stack.config.airflow_home
    metadata = describe_db(env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"), f"SQLite in {home}")
    print(
        f"Airflow metadata: {metadata}\n"
        f"Data store:       {describe_db(env.get('PENGUINS_DB_URL'), 'SQLite in .local/')}\n"
        f"Artifacts:        {env['ARTIFACTS_DIR']}\n"
        f"Prediction log:   {env['PREDICTIONS_DIR']}\n"
        f"MLflow:           {describe_mlflow(stack)}\n"
        "Starting the API and MLflow, migrating the Airflow database, then api-server, dag-processor and "
        "scheduler...",
        flush=True,
    )


def describe_mlflow(stack: Stack) -> str:
    config, uri = stack.config, stack.env["MLFLOW_TRACKING_URI"]
    if config.own_mlflow:
        return f"SQLite and artifacts in {config.mlflow_dir}"
    return f"{uri} (MLFLOW_TRACKING_URI; none started here)" if uri else "off (MLFLOW_TRACKING_URI is empty)"


def start_mlflow(stack: Stack) -> None:
    """The tracking server as scripts/mlflow_server.py runs it; stopped last, with the api-server: a task the
    stop lets finish still records its run."""
    config = stack.config
    backend, artifacts = mlflow_server.local_paths(config.mlflow_dir)
    argv = mlflow_server.command(config.mlflow_port, backend, artifacts)
    stack.component("mlflow", argv, stop_last=True, env=mlflow_server.environment(stack.env))


def start(stack: Stack) -> None:
    config, airflow = stack.config, str(BIN / "airflow")
    # The API needs nothing from Airflow: started first, it serves the last promoted model at once. Stopped
    # last, with the api-server: a warmup under way still gets its answer.
    stack.component("api", [sys.executable, "-m", API_MODULE], stop_last=True)
    if config.own_mlflow:
        start_mlflow(stack)
    # Idempotent and quick when up to date; before any Airflow component uses the database.
    stack.run_once("airflow-db-migrate", [airflow, "db", "migrate"])
    address = ["--host", config.airflow_host, "--port", str(config.airflow_port)]
    argv = [airflow, AIRFLOW_COMMANDS["airflow-apiserver"], *address]
    # Tasks report through it until they end, also the ones a stop lets finish.
    stack.component("airflow-apiserver", argv, stop_last=True)
    # The dag-processor has its own in-process execution API: it parses the DAGs while the api-server starts.
    stack.component("airflow-dag-processor", [airflow, AIRFLOW_COMMANDS["airflow-dag-processor"]])
    stack.wait_until("Airflow api-server", lambda: airflow_health(config).get("metadatabase") == "healthy")
    if config.own_mlflow:
        stack.wait_until("MLflow /health", lambda: mlflow_server.healthy(config.mlflow_url))
    stack.component("airflow-scheduler", [airflow, AIRFLOW_COMMANDS["airflow-scheduler"]])

    def components_healthy() -> bool:
        health = airflow_health(config)
        return health.get("scheduler") == "healthy" and health.get("dag_processor") == "healthy"

    stack.wait_until("scheduler and dag-processor heartbeat", components_healthy)
    stack.wait_until("API /health", lambda: http_get(f"{config.api_url}/health")[0] == 200)


def print_banner(stack: Stack) -> None:
    config = stack.config
    logs = "\n".join(f"    {c.name:<22} {c.log}" for c in stack.components)
    print(
        f"\nThe stack is up (Ctrl-C stops it):\n"
        f"  API          {config.api_url}   (form and chart at /, docs at /docs)\n"
        f"  Airflow UI   {config.airflow_url}   login {config.admin_user} / "
        f"{'admin' if config.admin_password == 'admin' else '(AIRFLOW_ADMIN_PASSWORD)'}\n"
        f"  MLflow UI    {stack.env['MLFLOW_TRACKING_URI'] or 'off'}   (runs and registered models)\n"
        f"  Logs\n{logs}\n",
        flush=True,
    )


def supervise(stack: Stack) -> None:
    """Watch the children until a signal; say once when the API serves a model; stop all if one dies."""
    config = stack.config
    announced = False
    if http_get(f"{config.api_url}/ready")[0] != 200:
        print(
            "No model served yet: on a first start data_pipeline runs by itself and train_pipeline follows;"
            f" watch it at {config.airflow_url}/dags",
            flush=True,
        )
    while True:
        for component in stack.components:
            if not component.running():
                raise StackError(stack.died_message(component))
            component.remember_descendants()
        if not announced and http_get(f"{config.api_url}/ready")[0] == 200:
            announced = True
            print(f"A model is served: POST {config.api_url}/predict or open {config.api_url}/", flush=True)
        time.sleep(2.0)


def _raise_stop(signum: int, _frame: object) -> None:
    raise StopRequested(signal.Signals(signum).name)


def main() -> int:
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    stack: Stack | None = None
    try:
        config = StackConfig.from_env(os.environ)
        check_port_free(config.airflow_host, config.airflow_port, "AIRFLOW_PORT")
        check_port_free(config.api_host, config.api_port, "API_PORT")
        if config.own_mlflow:
            check_port_free("127.0.0.1", config.mlflow_port, "MLFLOW_PORT")
        config.log_dir.mkdir(parents=True, exist_ok=True)
        (REPO / ".local").mkdir(exist_ok=True)
        # A key set in the environment wins over the kept one.
        stack = Stack(config, {**signing_keys(config), **os.environ})
        print_settings(stack)
        write_login(config)
        start(stack)
        print_banner(stack)
        supervise(stack)
    except StopRequested as request:
        print(f"\n{request} received: stopping every component...", flush=True)
        return 0
    except StackError as error:
        print(f"make run: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C must not cut the clean stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
            print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
