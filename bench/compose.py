"""The compose stack's costs as a user meets them: image builds, `up` → first served prediction, `down`/`up` →
served again, and each container's memory idle and while training; the same for the Celery override.

    .venv/bin/python bench/compose.py [--results bench/results/compose.json]

Runs a copy of the repository as a compose project of its own on free ports (scripts/compose_stack.py), on the
engine `DOCKER_HOST` / the Docker CLI reaches; with none it says so and writes nothing. Wall times on a
shared machine drift: the load averages are recorded beside them (scripts/provenance.py).
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from compose_stack import CELERY, ComposeStack, engine_problem, running
from provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "compose.json"


def timed(action: Any) -> tuple[float, Any]:
    start = time.monotonic()
    result = action()
    return round(time.monotonic() - start, 1), result


def settle(stack: ComposeStack, seconds: float = 20) -> dict[str, float]:
    """Memory once the stack has had `seconds` with nothing to do."""
    time.sleep(seconds)
    return stack.memory_mib()


def while_training(stack: ComposeStack) -> tuple[float, dict[str, float]]:
    """Trigger train_pipeline; its wall time and each service's peak memory, sampled until it ends."""
    peak: dict[str, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for service, mib in stack.memory_mib().items():
                peak[service] = max(peak.get(service, 0.0), mib)

    run_id = stack.trigger("train_pipeline")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    seconds, state = timed(lambda: stack.wait_run("train_pipeline", run_id, timeout=900))
    done.set()
    sampler.join()
    if state != "success":
        raise SystemExit(f"train_pipeline ended {state}:\n{stack.logs()}")
    return seconds, peak


def variant(stack: ComposeStack, build_first: bool) -> dict[str, Any]:
    """From a clean state: up, first prediction, idle memory, a training run, down/up, served again."""
    figures: dict[str, Any] = {}
    if build_first:
        figures["build_cold_s"], _ = timed(lambda: stack.compose("build", "--no-cache", timeout=1800))
        figures["build_cached_s"], _ = timed(lambda: stack.compose("build"))
    start = time.monotonic()
    stack.compose("up", "-d", "--build")
    version = stack.wait_served(timeout=900)
    figures["up_to_first_prediction_s"] = round(time.monotonic() - start, 1)
    figures["memory_idle_mib"] = settle(stack)
    figures["training_run_s"], figures["memory_training_peak_mib"] = while_training(stack)
    trained = stack.wait_served(timeout=300, other_than=version)
    stack.compose("down")
    start = time.monotonic()
    stack.compose("up", "-d")
    again = stack.wait_served(timeout=300)
    figures["down_up_to_served_s"] = round(time.monotonic() - start, 1)
    if again != trained:
        raise SystemExit(f"down/up served {again}, expected {trained}")
    return figures


def engine() -> dict[str, str]:
    """The engine behind the Docker API: its first server component (Docker Engine or Podman Engine)."""
    out = subprocess.run(
        ["docker", "version", "--format", "{{range .Server.Components}}{{.Name}}={{.Version}};{{end}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    name, _, version = out.split(";")[0].partition("=")
    return {"name": name or "?", "version": version or "?"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    problem = engine_problem()
    if problem:
        print(
            f"compose benchmark not run: {problem} (start one with ../shared/container-engine/engine-up.sh)"
        )
        return 0
    results: dict[str, Any] = {}
    for name, files, build_first in [("local", [], True), ("celery", [CELERY], False)]:
        with tempfile.TemporaryDirectory(prefix=f"bench-compose-{name}-") as folder:
            stack = ComposeStack.scratch(
                Path(folder), f"penguins-bench-{secrets.token_hex(3)}", AIRFLOW_UID="1000"
            )
            stack.files += files
            with running(stack):
                results[name] = variant(stack, build_first)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    results = provenance() | results
    results["machine"]["engine"] = engine()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
