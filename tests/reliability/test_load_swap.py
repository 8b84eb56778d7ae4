"""Bounded sustained load on /predict and on V2 infer (Debian's `wrk`, a C load generator, so the client does
not starve the server of CPU) against a real two-worker server, first steady, then while the model is
promoted again and again: no request fails, every answer names a known version, and p50/p99 of both phases
go to the report. tests/api/test_hot_swap.py checks that no answer mixes two versions; this measures the
service under it."""

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability_kit import API, load_module, wait_for
from vs_mlserver import V2_PATH, v2_body

from app.schemas import EXAMPLE_PENGUIN
from penguins_pipeline.training import artifacts

pytestmark = pytest.mark.slow

STEADY_SECONDS = 10
SWAP_SECONDS = 24
PROMOTION_EVERY = 2.0
CONNECTIONS = 8
# The hot-swap test's penguins: their answers differ between the two versions.
PENGUINS = load_module("tests/api/test_hot_swap.py", "api_hot_swap_tests").PENGUINS
# path -> the bodies sent there: each penguin alone, as /predict takes it and as a V2 request.
ENDPOINTS = {"/predict": PENGUINS, V2_PATH: [v2_body([penguin]) for penguin in PENGUINS]}

# Rotates the bodies; counts answers by model version (or by status when there is none); prints RESULT lines.
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {BODIES}
local threads = {}
local next_body = 0
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end
function response(status, headers, body)
  local key = status == 200 and string.match(body, '"model_version":"([^"]+)"') or ("status_" .. status)
  counts[key] = (counts[key] or 0) + 1
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests %d\\nRESULT duration_us %d\\n", summary.requests, summary.duration))
  io.write(string.format("RESULT errors connect=%d read=%d write=%d status=%d timeout=%d\\n",
    e.connect, e.read, e.write, e.status, e.timeout))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("RESULT p%s %d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("RESULT max %d\\n", latency.max))
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("counts")) do io.write(string.format("RESULT answer %s %d\\n", key, n)) end
  end
end
"""


def wrk(url: str, seconds: int, script: Path) -> dict[str, Any]:
    """One bounded wrk run on `url`: requests, failures by kind, latency percentiles (ms), answers by
    version."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split(" ", 2)[1:] for line in output.splitlines() if line.startswith("RESULT "))
    errors = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines["errors"])}
    answers = {key: int(n) for key, n in re.findall(r"^RESULT answer (\S+) (\d+)$", output, re.MULTILINE)}
    requests = int(lines["requests"])
    return {
        "requests": requests,
        "requests_per_second": round(requests / (int(lines["duration_us"]) / 1e6), 1),
        "failed": sum(errors.values()),
        "errors": errors,
        **{f"{p}_ms": round(int(lines[p]) / 1000, 2) for p in ("p50", "p90", "p99", "p99.9")},
        "max_ms": round(int(lines["max"]) / 1000, 2),
        "answers": answers,
    }


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_sustained_load_with_promotions_fails_no_request(
    tmp_path: Path, versions, figures, path: str
) -> None:
    folder = tmp_path / "artifacts"
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    script = tmp_path / "load.lua"
    bodies = ",".join(f"[[{json.dumps(body)}]]" for body in ENDPOINTS[path])
    script.write_text(LUA.replace("{BODIES}", "{" + bodies + "}"))
    token = "load-test-token"
    env = {"API_WORKERS": "2", "WARMUP_TOKEN": token, "API_ACCESS_LOG": "false"}

    with API.running_api(folder, **env) as url:
        for body in ENDPOINTS[path]:  # both workers up and answering before anything is measured
            assert httpx.post(f"{url}{path}", json=body, timeout=60).status_code == 200
        steady = wrk(f"{url}{path}", STEADY_SECONDS, script)

        promotions: list[dict[str, Any]] = []
        swapping: dict[str, Any] = {}
        load = threading.Thread(target=lambda: swapping.update(wrk(f"{url}{path}", SWAP_SECONDS, script)))
        load.start()
        started = time.monotonic()
        while time.monotonic() - started < SWAP_SECONDS - PROMOTION_EVERY:
            time.sleep(PROMOTION_EVERY)
            version = versions.other if len(promotions) % 2 == 0 else versions.main
            artifacts.promote(
                folder, version
            )  # the pipeline's own promotion: current.json replaced atomically
            how = "warmup" if len(promotions) % 3 else "poller"
            if how == "warmup":
                answer = httpx.post(f"{url}/warmup", headers={"Authorization": f"Bearer {token}"}, timeout=60)
                assert answer.status_code == 200, answer.text
            promotions.append({"at_s": round(time.monotonic() - started, 1), "version": version, "via": how})
        load.join()

        final = promotions[-1]["version"]
        wait_for(
            lambda: all(
                httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN).json()["model_version"] == final
                for _ in range(10)
            ),
            10,
            "both workers serving the last promoted version",
        )

    figures.record(
        "load",
        "predict_under_promotions" if path == "/predict" else "v2_infer_under_promotions",
        {
            "cases": steady["requests"] + swapping["requests"],
            "endpoint": path,
            "server": "python -m app, 2 uvicorn workers",
            "client": f"wrk, 1 thread, {CONNECTIONS} connections",
            "steady": steady,
            "while_promoting": swapping,
            "promotions": len(promotions),
            "promotion_log": promotions,
            "p99_ratio_promoting_over_steady": round(swapping["p99_ms"] / max(steady["p99_ms"], 0.001), 2),
        },
    )
    for phase in (steady, swapping):
        assert phase["failed"] == 0, phase
        assert phase["requests"] > 200, phase
        assert set(phase["answers"]) <= {versions.main, versions.other}, phase["answers"]
    assert len(promotions) >= 8
    assert swapping["answers"].get(versions.other, 0) > 0 and swapping["answers"].get(versions.main, 0) > 0
