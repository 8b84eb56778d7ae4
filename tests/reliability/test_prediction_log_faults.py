"""The prediction log when things go wrong for real: the API SIGKILLed in the middle of a load of writes (from
/predict, /predict/batch and V2 infer), a folder that cannot be created, a disk that fills up (a real 256 KiB
tmpfs). Predictions never fail, what was written is never a half record taken for whole, failures are
counted in /metrics and logged once, and the log recovers by itself."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from reliability_kit import API, listening_pid, load_module, server_log, wait_for
from vs_mlserver import V2_PATH, v2_body

from app.schemas import EXAMPLE_PENGUIN
from penguins_pipeline.training import artifacts

# Seconds for the writer (a flush every 0.1 s) to be seen at work: generous for a loaded two-core machine.
WAIT = 30
LOG_TESTS = load_module("tests/api/test_prediction_log.py", "api_prediction_log_tests")
METRICS_TESTS = load_module("tests/api/test_warmup_and_metrics.py", "api_metrics_tests")


@pytest.fixture
def served(tmp_path: Path, versions) -> Path:
    folder = tmp_path / "artifacts"
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    return folder


def metric(url: str, name: str, **labels: str) -> float:
    return float(METRICS_TESTS.value(httpx.get(f"{url}/metrics").text, name, **labels))


def errors(url: str, reason: str) -> float:
    return metric(url, "penguins_prediction_log_errors_total", reason=reason)


def test_a_sigkill_mid_load_leaves_only_whole_records(served: Path, tmp_path: Path, figures) -> None:
    folder = tmp_path / "predictions"
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                try:
                    http.post("/predict/batch", json={"instances": [EXAMPLE_PENGUIN] * 2000})
                    http.post("/predict", json=EXAMPLE_PENGUIN)
                    http.post(V2_PATH, json=v2_body([EXAMPLE_PENGUIN] * 500))
                except httpx.TransportError:
                    return  # the server is gone

    with API.running_api(served, PREDICTIONS_DIR=str(folder), API_ACCESS_LOG="false") as url:
        clients = [threading.Thread(target=load) for _ in range(4)]
        for client in clients:
            client.start()
        try:
            wait_for(lambda: sum(f.stat().st_size for f in folder.glob("*.jsonl")) > 5_000_000, 120, "writes")
            os.kill(listening_pid(int(url.rsplit(":", 1)[1])), signal.SIGKILL)
        finally:
            stop.set()
            for client in clients:
                client.join()

    (path,) = folder.glob("*.jsonl")
    data = path.read_bytes()
    records = LOG_TESTS.read_log(folder)[path.name]  # every line ending with \n parses, with every field
    assert len({(r["request_id"], r["item"]) for r in records}) == len(records)
    tail = data[data.rfind(b"\n") + 1 :]
    if tail:  # killed mid-write: a truncated last line, which the reader does not take
        with pytest.raises(json.JSONDecodeError):
            json.loads(tail)
    figures.record(
        "faults",
        "prediction_log_sigkill_under_load",
        {"cases": 1, "records_whole": len(records), "truncated_tail_bytes": len(tail)},
    )


def test_a_folder_that_cannot_exist_is_counted_logged_once_and_recovered(
    served: Path, tmp_path: Path, figures
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the log's parent folder should be")  # even root cannot mkdir
    folder = blocker / "predictions"
    with API.running_api(served, PREDICTIONS_DIR=str(folder)) as url:
        for failed in range(1, 4):  # three flushes, one episode
            assert httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN).status_code == 200
            wait_for(lambda n=failed: errors(url, "folder_missing") >= n, WAIT, "the failed write counted")
        assert metric(url, "penguins_prediction_log_dropped_total", reason="write_failed") == 3
        assert server_log(url).count("prediction log: cannot write") == 1

        blocker.unlink()
        answer = httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN)
        assert answer.status_code == 200
        wait_for(lambda: metric(url, "penguins_prediction_log_records_total") == 1, WAIT, "written")
        assert "writing to" in server_log(url)
    (record,) = LOG_TESTS.records(folder)
    assert record["request_id"] == answer.headers["x-request-id"]
    figures.record("faults", "prediction_log_folder_cannot_exist", {"cases": 3, "recovered": True})


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of `folder`'s filesystem."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    return filler


def test_a_full_disk_is_counted_and_recovered(served: Path, tmp_path: Path, figures) -> None:
    with small_tmpfs(tmp_path / "small") as disk:
        folder = disk / "predictions"
        with API.running_api(served, PREDICTIONS_DIR=str(folder)) as url:
            assert httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN).status_code == 200
            wait_for(lambda: metric(url, "penguins_prediction_log_records_total") == 1, WAIT, "first record")
            filler = fill(disk)
            batch = httpx.post(f"{url}/predict/batch", json={"instances": [EXAMPLE_PENGUIN] * 100})
            assert batch.status_code == 200
            wait_for(lambda: errors(url, "disk_full") >= 1, WAIT, "the full disk counted")
            assert server_log(url).count("prediction log: cannot write") == 1

            filler.unlink()
            last = httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN)
            wait_for(lambda: last.headers["x-request-id"] in str(LOG_TESTS.records(folder)), WAIT, "recovery")
            written = metric(url, "penguins_prediction_log_records_total")
            dropped = metric(url, "penguins_prediction_log_dropped_total", reason="write_failed")
        found = LOG_TESTS.records(folder)  # whole records only, the cut one removed
        assert len(found) == written and written + dropped == 102
    figures.record("faults", "prediction_log_disk_full", {"cases": 1, "written": written, "dropped": dropped})
