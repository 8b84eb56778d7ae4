"""The compose stack driven as a user drives it, on whatever engine `DOCKER_HOST` / the Docker CLI reaches.

Not a user entry point: `make test-compose` (tests/deploy/test_compose_stack.py) and `make bench`
(bench/compose.py) start a copy of the repository in a scratch folder as a compose project of its own, on free
host ports, so they never touch the developer's `./artifacts` or a stack running on the fixed ports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from free_port import free_port

from app.schemas import EXAMPLE_PENGUIN

REPO = Path(__file__).resolve().parents[1]
BASE = "docker-compose.yml"
CELERY = "docker-compose.celery.yml"
# The services that keep running, and the one-shot jobs (done once they exit 0).
LONG_RUNNING = [
    "mysql",
    "airflow-db",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "api",
    "mlflow",
    "s3",
    "prometheus",
]
ONE_SHOT = ["airflow-init", "s3-bucket"]
T = TypeVar("T")


class StackError(RuntimeError):
    """A compose command failed, or the stack did not reach a state in time."""


def engine_problem() -> str | None:
    """Why no container engine can be used here, or None when `docker info` answers."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        return (
            f"no container engine answers `docker info` (DOCKER_HOST={os.environ.get('DOCKER_HOST')}): "
            + (info.stderr.strip().splitlines() or ["?"])[-1]
        )
    return None


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """The first truthy answer of `probe`; errors while waiting count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = probe()
            if answer:
                return answer
            last = answer
        except (httpx.HTTPError, StackError, ValueError, KeyError) as err:
            last = err
        time.sleep(every)
    raise StackError(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


def copy_repository(destination: Path) -> Path:
    """The files git tracks, as they are in the working tree: what a fresh clone builds and mounts."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in listed.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@dataclass
class ComposeStack:
    """One compose project: its folder, its name, the `.env`-style settings it runs with, its files."""

    root: Path
    project: str
    env: dict[str, str]
    files: list[str] = field(default_factory=lambda: [BASE])
    _token: str | None = None

    @classmethod
    def scratch(cls, folder: Path, project: str, **settings: str) -> ComposeStack:
        """A copy of the repository in `folder`, on free host ports, with `settings` as its `.env` would.

        Its images are tagged with the project's name: under the default tags, another copy built on the same
        engine meanwhile (another branch, another test) would replace what this one runs."""
        published = ("API_PORT", "AIRFLOW_PORT", "MYSQL_PORT", "MLFLOW_PORT", "S3_PORT", "PROMETHEUS_PORT")
        ports = {name: free_port() for name in published}
        images = {
            "API_IMAGE_NAME": f"penguins-api:{project}",
            "AIRFLOW_IMAGE_NAME": f"penguins-airflow:{project}",
        }
        env = {name: str(port) for name, port in ports.items()} | images | settings
        return cls(root=copy_repository(folder), project=project, env=env)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['API_PORT']}"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.env['AIRFLOW_PORT']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.env['MLFLOW_PORT']}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.env['S3_PORT']}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PROMETHEUS_PORT']}"

    # --- compose and the engine ------------------------------------------------------------------------
    def compose(self, *args: str, timeout: float = 900, stderr: bool = False) -> str:
        """`docker compose -p <project> -f ... <args>` in the copy; its stdout (and then its stderr, with
        `stderr`: what `compose run` relays of a container's log), or StackError with stderr."""
        command = ["docker", "compose", "-p", self.project]
        for name in self.files:
            command += ["-f", name]
        done = subprocess.run(
            [*command, *args],
            cwd=self.root,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"`docker compose {' '.join(args)}` failed ({done.returncode}):\n{done.stderr}")
        return done.stdout + done.stderr if stderr else done.stdout

    def containers(self) -> list[dict[str, Any]]:
        """`compose ps -a` as records (Name, Service, State, Health, ID), one-shot jobs included."""
        out = self.compose("ps", "-a", "--format", "json").strip()
        if out.startswith("["):
            return list(json.loads(out))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def hostnames(self, service: str) -> dict[str, str]:
        """Container hostname -> container name for a service (Airflow records the hostname of each task)."""
        names = [c["Name"] for c in self.containers() if c["Service"] == service]
        if not names:
            return {}
        out = subprocess.run(
            ["docker", "inspect", "--format", "{{.Config.Hostname}} {{.Name}}", *names],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {host: name.lstrip("/") for host, name in (line.split() for line in out.splitlines())}

    def memory_mib(self) -> dict[str, float]:
        """Service -> memory in MiB now (`docker stats --no-stream`); replicas are summed per service."""
        ids = {c["ID"][:12]: c["Service"] for c in self.containers() if c["State"] == "running"}
        out = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.ID}} {{.MemUsage}}", *ids],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        usage: dict[str, float] = {}
        for line in out.splitlines():
            container, used = line.split()[0][:12], line.split()[1]
            service = ids[container]
            usage[service] = round(usage.get(service, 0.0) + mebibytes(used), 1)
        return usage

    def leftovers(self) -> dict[str, list[str]]:
        """What the engine still holds of this project: containers, volumes, networks (by compose label)."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, listing in {
            "containers": ["ps", "-a", "--filter", label, "--format", "{{.Names}}"],
            "volumes": ["volume", "ls", "--filter", label, "--format", "{{.Name}}"],
            "networks": ["network", "ls", "--filter", label, "--format", "{{.Name}}"],
        }.items():
            out = subprocess.run(["docker", *listing], capture_output=True, text=True, check=True).stdout
            found[kind] = out.split()
        return found

    # --- the API -------------------------------------------------------------------------------------------
    def predict(self, timeout: float = 10) -> httpx.Response:
        return predict(self.api_url, timeout)

    def served_version(self) -> str | None:
        return served_version(self.api_url)

    def wait_served(self, timeout: float = 900, other_than: str | None = None) -> str:
        """Block until a prediction is served (by a version other than `other_than`); that version."""

        def probe() -> str | None:
            version = self.served_version()
            return version if version and version != other_than else None

        return wait_for("a served prediction", probe, timeout)

    # --- Airflow's REST API --------------------------------------------------------------------------------
    def airflow(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call of Airflow's REST API as admin (SimpleAuthManager login), JSON in and out."""
        if self._token is None:
            login = {"username": "admin", "password": "admin"}
            answer = httpx.post(f"{self.airflow_url}/auth/token", json=login, timeout=30)
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        headers = {"Authorization": f"Bearer {self._token}"}
        answer = httpx.request(method, f"{self.airflow_url}{path}", headers=headers, timeout=30, **kwargs)
        if answer.status_code == 401:
            self._token = None  # a restarted api-server may sign with a new key: log in again
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.airflow("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def trigger(self, dag_id: str) -> str:
        """Unpause and trigger a DAG now; the new run's id."""
        self.airflow("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        return str(
            self.airflow("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})["dag_run_id"]
        )

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.airflow("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        """Block until a run ends; its final state ('success' or 'failed')."""

        def ended() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return wait_for(f"{dag_id} run {run_id} to end", ended, timeout)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return list(self.airflow("GET", path)["task_instances"])

    def logs(self) -> str:
        """Every container's log, for a failure message."""
        return self.compose("logs", "--no-color", "--tail", "80")


def predict(api_url: str, timeout: float = 10) -> httpx.Response:
    """POST /predict of the example penguin to the API at `api_url` (the stack's, or another container's)."""
    return httpx.post(f"{api_url}/predict", json=EXAMPLE_PENGUIN, timeout=timeout)


def served_version(api_url: str) -> str | None:
    """The version a real prediction comes from now, or None while the API has no model or no socket."""
    try:
        answer = predict(api_url)
    except httpx.HTTPError:
        return None
    return answer.json()["model_version"] if answer.status_code == 200 else None


# A container's cgroup as the kernel keeps it, read inside the container (v2's files, or v1's): the memory
# limit and high-water mark in bytes, the CPU quota and period in microseconds, the time the quota throttled
# it, and how many of its processes the kernel killed for memory (Podman may leave the engine's OOMKilled
# false for those: FACTS). Its own Python runs it: the API image has no shell tools to rely on.
CGROUP_FIGURES = """
import json, os
def words(*names):
    for name in names:
        if os.path.exists(name):
            return open(name).read().split()
    return []
def after(found, key, scale=None):
    value = int(found[found.index(key) + 1]) if key in found else None
    return value * scale if value is not None and scale else value
if os.path.exists("/sys/fs/cgroup/memory.max"):
    root = "/sys/fs/cgroup/"
    quota, period = words(root + "cpu.max")
    figures = {"cgroup": 2, "memory_limit": words(root + "memory.max")[0],
               "memory_peak": (words(root + "memory.peak") or [None])[0],
               "oom_kills": after(words(root + "memory.events"), "oom_kill"),
               "throttled_s": after(words(root + "cpu.stat"), "throttled_usec", 1e-6)}
else:
    memory, cpu = "/sys/fs/cgroup/memory/", ("/sys/fs/cgroup/cpu/", "/sys/fs/cgroup/cpu,cpuacct/")
    quota = words(*(c + "cpu.cfs_quota_us" for c in cpu))[0]
    period = words(*(c + "cpu.cfs_period_us" for c in cpu))[0]
    figures = {"cgroup": 1, "memory_limit": words(memory + "memory.limit_in_bytes")[0],
               "memory_peak": words(memory + "memory.max_usage_in_bytes")[0],
               "oom_kills": after(words(memory + "memory.oom_control"), "oom_kill"),
               "throttled_s": after(words(*(c + "cpu.stat" for c in cpu)), "throttled_time", 1e-9)}
print(json.dumps({**figures, "cpu_quota": quota, "cpu_period": period}))
"""


def inspect(container: str) -> dict[str, Any]:
    """`docker inspect` of one container."""
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out)[0])


def cgroup_figures(container: str) -> dict[str, Any]:
    """CGROUP_FIGURES of a running container that has Python (the API's)."""
    done = subprocess.run(
        ["docker", "exec", container, "python", "-c", CGROUP_FIGURES],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise StackError(f"reading the cgroup of {container} failed: {done.stderr.strip()}")
    return dict(json.loads(done.stdout))


def memory_usage(container: str) -> tuple[float, float]:
    """(used, limit) in MiB now, as `docker stats --no-stream` reports them."""
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    used, limit = out.split("/")
    return mebibytes(used.strip()), mebibytes(limit.strip())


def mebibytes(text: str) -> float:
    """'261.5MiB' (docker stats) -> 261.5."""
    units = {
        "KiB": 1 / 1024,
        "MiB": 1.0,
        "GiB": 1024.0,
        "kB": 1e3 / 2**20,
        "MB": 1e6 / 2**20,
        "GB": 1e9 / 2**20,
    }
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text.rstrip("B")) / 2**20


@contextmanager
def running(stack: ComposeStack) -> Iterator[ComposeStack]:
    """The stack for the block; afterwards `down -v` and its own images removed, whatever happened inside."""
    try:
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", timeout=300)
        images = [stack.env[name] for name in ("API_IMAGE_NAME", "AIRFLOW_IMAGE_NAME") if name in stack.env]
        if images:
            subprocess.run(["docker", "image", "rm", "--force", *images], capture_output=True, check=False)
