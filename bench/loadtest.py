"""How many Locust users the API holds inside the course's container limits, and what the course's own load
test (10,000 users spawned 500 a second) does to it.

    .venv/bin/python bench/loadtest.py [--results bench/results/loadtest.json]

The API runs as its image runs in compose (api/Dockerfile, built here; the API's defaults, access log and
prediction log on) in `docker run --cpus C --memory M --memory-swap M`, for each limit (`0.5` CPU / `128m`,
`1` CPU / `256m`) and each API_WORKERS (1, 2), serving a model trained here on palmerpenguins and mounted
read-only. The users are `make loadtest`'s (bench/locustfile.py), run by Locust headless in a process of their
own on the same machine. Steps: 25, 50, 100, ... users, each for a fixed time with its statistics reset once
every user has started; a step is held when no request failed and the p95 stayed under P95_GOAL_MS, and the
first step not held ends the climb. Then the course's scenario, bounded in time. For every run the container's
memory peak (the cgroup's high-water mark), its CPU throttling, the kills of the kernel, and the CPU time
Locust itself used (on a shared machine the load generator can be the bottleneck: the figures say when).

On the engine `DOCKER_HOST` / the Docker CLI reaches; with none it says so and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from compose_stack import REPO, StackError, cgroup_figures, engine_problem, inspect, memory_usage, wait_for
from free_port import free_port
from provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "loadtest.json"
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
LOCUST = Path(sys.executable).parent / "locust"
LIMITS = ["0.5/128m", "1/256m"]
WORKERS = [1, 2]
STEPS = [25, 50, 100, 200, 400, 800, 1600, 3200]
P95_GOAL_MS = 100.0
# The course's load-test lab: 10,000 users, spawned 500 a second; bounded here in time.
COURSE_USERS, COURSE_SPAWN_RATE = 10_000, 500
# The summary bench/locustfile.py writes beside `--csv <prefix>` (not imported: importing Locust patches this
# process with gevent), and what each run keeps of its totals.
SUMMARY_SUFFIX = "_summary.json"
FIGURES = ("requests", "failures", "p50_ms", "p95_ms", "p99_ms", "requests_per_second")


@dataclass(frozen=True)
class Limit:
    """One container limit, as `docker run` takes it: CPUs and memory (`0.5/128m`)."""

    cpus: str
    memory: str

    @classmethod
    def parse(cls, text: str) -> Limit:
        cpus, _, memory = text.partition("/")
        try:
            if float(cpus) <= 0 or not memory[:-1].isdigit() or memory[-1] not in "kmg":
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected CPUs/memory, e.g. 0.5/128m") from None
        return cls(cpus, memory)

    def __str__(self) -> str:
        return f"{self.cpus}/{self.memory}"


def build_image(tag: str) -> None:
    """The API image from the repository, as `docker compose build` makes it."""
    done = subprocess.run(
        ["docker", "build", "-f", "api/Dockerfile", "-t", tag, "."],
        cwd=REPO,
        env={**os.environ, "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"building the API image failed:\n{done.stderr[-3000:]}")


def train(folder: Path) -> str:
    """A version trained on palmerpenguins with the pipeline's own writer, and promoted. Imported here: the
    rest of the benchmark needs no scikit-learn."""
    import palmerpenguins

    from penguins_pipeline.core.schema import DATA_COLUMNS
    from penguins_pipeline.core.settings import PipelineSettings
    from penguins_pipeline.training import artifacts
    from penguins_pipeline.training.train import train_and_write

    penguins = palmerpenguins.load_penguins().dropna()[DATA_COLUMNS].reset_index(drop=True)
    version = train_and_write(penguins, folder, PipelineSettings(artifacts_dir=folder))
    artifacts.promote(folder, version)
    return version


def readable(folder: Path) -> None:
    """Every file and folder readable by anyone: the image runs as a user of its own."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@contextmanager
def api_container(image: str, artifacts: Path, limit: Limit, workers: int) -> Iterator[tuple[str, str]]:
    """The API image under `limit`, `workers` uvicorn workers, on a free loopback port: (container, URL) once
    it serves the promoted version; removed afterwards."""
    port = free_port()
    name = f"penguins-loadtest-{secrets.token_hex(3)}"
    run = [
        "docker", "run", "-d", "--name", name,
        "--cpus", limit.cpus, "--memory", limit.memory, "--memory-swap", limit.memory,
        "-e", f"API_WORKERS={workers}", "-p", f"127.0.0.1:{port}:8000",
        "-v", f"{artifacts}:/opt/artifacts:ro", image,
    ]  # fmt: skip
    subprocess.run(run, capture_output=True, text=True, check=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the API ready", lambda: httpx.get(f"{url}/ready", timeout=2).status_code == 200, 300, 0.5)
        yield name, url
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


class MemoryPeak(threading.Thread):
    """`docker stats` every second while a run lasts: the highest memory seen (beside the cgroup's mark)."""

    def __init__(self, container: str) -> None:
        super().__init__(daemon=True)
        self.container, self.peak_mib, self.done = container, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            try:
                self.peak_mib = max(self.peak_mib, memory_usage(self.container)[0])
            except (subprocess.CalledProcessError, ValueError):
                return  # the container is gone (killed)


def locust(
    url: str, users: int, spawn_rate: float, seconds: int, folder: Path, reset: bool
) -> dict[str, Any]:
    """One headless Locust run of bench/locustfile.py's users: its figures in total, from the summary the
    locustfile writes once every user has stopped (Locust's own CSV is rewritten every second, so it may
    miss the last one), and the CPU Locust used (cores, over the run)."""
    prefix = folder / f"users{users}"
    command = [
        str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--only-summary", "--host", url,
        "--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", f"{seconds}s",
        "--stop-timeout", "5", "--csv", str(prefix), *(["--reset-stats"] if reset else []),
    ]  # fmt: skip
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 600, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = Path(f"{prefix}{SUMMARY_SUFFIX}")
    if not summary.exists():
        raise SystemExit(f"Locust wrote no summary (exit {done.returncode}):\n{done.stderr[-3000:]}")
    total = json.loads(summary.read_text())["total"]
    figures: dict[str, Any] = {key: total[key] for key in FIGURES}
    cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    figures["locust_cpu_share"] = round(cpu / wall, 2)
    return figures


def measured(container: str, run: Any) -> dict[str, Any]:
    """`run()`'s figures with the container's: its memory peak, CPU throttling and kills during it."""
    before = cgroup_figures(container)
    sampler = MemoryPeak(container)
    sampler.start()
    figures = dict(run())
    sampler.done.set()
    sampler.join()
    state = inspect(container)["State"]
    figures["api_running"] = bool(state["Running"])
    figures["api_exit_code"] = state["ExitCode"]
    figures["memory_peak_sampled_mib"] = round(sampler.peak_mib, 1)
    if state["Running"]:
        after = cgroup_figures(container)
        if after["memory_peak"] is not None:
            figures["memory_peak_mib"] = round(int(after["memory_peak"]) / 2**20, 1)
        if after["throttled_s"] is not None and before["throttled_s"] is not None:
            figures["api_throttled_s"] = round(after["throttled_s"] - before["throttled_s"], 1)
        if after["oom_kills"] is not None and before["oom_kills"] is not None:
            figures["oom_kills"] = after["oom_kills"] - before["oom_kills"]
    figures["killed"] = not state["Running"] or bool(figures.get("oom_kills"))
    return figures


def held(step: dict[str, Any]) -> bool:
    answered = step["requests"] > 0 and step["failures"] == 0
    return answered and step["p95_ms"] < P95_GOAL_MS and not step["killed"]


def climb(container: str, url: str, steps: list[int], seconds: int, folder: Path) -> list[dict[str, Any]]:
    """Step the users up until a step is not held (that step is kept, as the first one past the capacity)."""
    results = []
    for users in steps:
        spawn_rate = max(users / 2, 1)  # every user started within two seconds
        step = {"users": users} | measured(
            container, lambda u=users, r=spawn_rate: locust(url, u, r, seconds, folder, reset=True)
        )
        step["held"] = held(step)
        results.append(step)
        print(f"  {users} users: {json.dumps(step)}", flush=True)
        if not step["held"]:
            break
    return results


def configuration(
    image: str, artifacts: Path, limit: Limit, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One limit and worker count: idle memory, the climb, then the course's scenario on a fresh container."""
    entry: dict[str, Any] = {"cpus": float(limit.cpus), "memory": limit.memory, "workers": workers}
    with tempfile.TemporaryDirectory(prefix="bench-loadtest-") as scratch:
        with api_container(image, artifacts, limit, workers) as (container, url):
            time.sleep(2)
            entry["idle_memory_mib"] = round(memory_usage(container)[0], 1)
            entry["steps"] = climb(container, url, args.steps, args.step_seconds, Path(scratch))
        holding = [step["users"] for step in entry["steps"] if step["held"]]
        entry["most_users_held"] = max(holding, default=0)
        with api_container(image, artifacts, limit, workers) as (container, url):
            course = args.course_users, args.course_spawn_rate, args.course_seconds, Path(scratch)
            entry["course"] = measured(container, lambda: locust(url, *course, reset=False))
    print(f"{limit} x {workers} workers: {entry['most_users_held']} users held; course {entry['course']}")
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--limits", type=Limit.parse, nargs="+", default=[Limit.parse(x) for x in LIMITS])
    parser.add_argument("--workers", type=int, nargs="+", default=WORKERS)
    parser.add_argument("--steps", type=int, nargs="+", default=STEPS, help="users of each step, ascending")
    parser.add_argument("--step-seconds", type=int, default=20)
    parser.add_argument("--course-users", type=int, default=COURSE_USERS)
    parser.add_argument("--course-spawn-rate", type=float, default=COURSE_SPAWN_RATE)
    parser.add_argument("--course-seconds", type=int, default=60)
    parser.add_argument(
        "--artifacts", type=Path, help="a folder with a promoted version (default: train one)"
    )
    args = parser.parse_args(argv)
    if args.steps != sorted(args.steps) or min(args.steps) < 1:
        parser.error("--steps: positive user counts, ascending")
    problem = engine_problem()
    if problem:
        print(
            f"load test benchmark not run: {problem} (start one with ../shared/container-engine/engine-up.sh)"
        )
        return 0
    image = f"penguins-api:loadtest-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="bench-loadtest-model-") as folder:
        artifacts = Path(folder) / "artifacts"
        if args.artifacts:
            shutil.copytree(args.artifacts, artifacts)
        else:
            train(artifacts)
        readable(Path(folder))
        build_image(image)
        try:
            runs = [
                configuration(image, artifacts, limit, workers, args)
                for limit in args.limits
                for workers in args.workers
            ]
        except StackError as err:
            raise SystemExit(f"load test benchmark failed: {err}") from err
        finally:
            subprocess.run(["docker", "image", "rm", "--force", image], capture_output=True, check=False)
    setup = {
        "runner": "docker run --cpus --memory --memory-swap (the API image, its defaults)",
        "steps": args.steps,
        "step_seconds": args.step_seconds,
        "p95_goal_ms": P95_GOAL_MS,
        "course": {
            "users": args.course_users,
            "spawn_rate": args.course_spawn_rate,
            "seconds": args.course_seconds,
        },
    }
    results = provenance() | {"setup": setup, "runs": runs}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
