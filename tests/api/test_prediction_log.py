"""The prediction log, read as monitor_pipeline reads it: real servers (`python -m app`) write real files.

The format (README, "Prediction log"): JSON Lines named predictions-<UTC start>-<pid>.jsonl, one record per
answered penguin, only lines ending with a newline count.
"""

import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from app.schemas import EXAMPLE_PENGUIN

FIELDS = {
    "request_id",
    "item",
    "time",
    "endpoint",
    "model_version",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "island",
    "sex",
    "species",
    "probabilities",
}
FILE_NAME = re.compile(r"predictions-\d{8}T\d{12}Z-(\d+)\.jsonl")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
SEAM = '"},{"request_id":"x'
GENTOO_ON_BISCOE = {
    "bill_length_mm": 47.5,
    "bill_depth_mm": 15.0,
    "flipper_length_mm": 218,
    "body_mass_g": 4950,
    "island": "biscoe",
    "sex": "MALE",
}


def read_log(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """file name -> its records, as the spec's reader takes them (a last line without newline is none)."""
    files: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        assert FILE_NAME.fullmatch(path.name), path.name
        lines = path.read_bytes().split(b"\n")[:-1]  # what follows the last newline is not a record
        files[path.name] = [json.loads(line) for line in lines]
        for record in files[path.name]:
            assert set(record) == FIELDS, record
            assert TIME.fullmatch(record["time"]), record["time"]
    return files


def records(folder: Path) -> list[dict[str, Any]]:
    return [record for file in read_log(folder).values() for record in file]


def made_by_the_api(response: httpx.Response) -> bool:
    """The response's X-Request-ID is a new uuid4, in hex."""
    made = response.headers["x-request-id"]
    return re.fullmatch("[0-9a-f]{32}", made) is not None and uuid.UUID(hex=made).version == 4


def expected(request_id: str, item: int, endpoint: str, sent: dict, answer: dict) -> dict[str, Any]:
    """The record of one answered penguin: what the model saw (its own category spelling) and its answer."""
    return {
        "request_id": request_id,
        "item": item,
        "endpoint": endpoint,
        "model_version": answer["model_version"],
        **{name: float(sent[name]) for name in list(sent)[:4]},
        "island": sent["island"].strip().capitalize(),  # the model's spelling: Biscoe, Dream, Torgersen
        "sex": sent["sex"].lower(),  # female, male
        "species": answer["species"],
        "probabilities": answer["probabilities"],
    }


def test_every_answered_penguin_is_recorded_with_its_request_id(
    artifacts_dir: Path, api_server, tmp_path: Path
) -> None:
    folder = tmp_path / "predictions"
    batch = [EXAMPLE_PENGUIN, GENTOO_ON_BISCOE, {**EXAMPLE_PENGUIN, "island": " TORGERSEN "}]
    with api_server(artifacts_dir, PREDICTIONS_DIR=str(folder)) as url, httpx.Client(base_url=url) as http:
        kept = http.post("/predict", json=EXAMPLE_PENGUIN, headers={"X-Request-ID": "client id/42"})
        made = http.post("/predict/batch", json={"instances": batch})
        replaced = http.post("/predict", json=GENTOO_ON_BISCOE, headers={"X-Request-ID": "x" * 129})
        refused = http.post("/predict", json={**EXAMPLE_PENGUIN, "island": "Mars"})
        health = http.get("/health", headers={"X-Request-ID": "é".encode()})
        # An id that looks like the seam between two records of a batch's dump: the cut must not fall in it.
        seam = http.post("/predict/batch", json={"instances": batch}, headers={"X-Request-ID": SEAM})
    assert kept.headers["x-request-id"] == "client id/42"
    assert made_by_the_api(made) and made_by_the_api(replaced) and made_by_the_api(health)
    assert refused.status_code == 422 and made_by_the_api(refused)
    assert len({made.headers["x-request-id"], replaced.headers["x-request-id"]}) == 2

    found = records(folder)  # the server stopped cleanly: everything was flushed
    assert len(read_log(folder)) == 1  # one worker, one file
    for record in found:
        del record["time"]
    assert sorted(found, key=lambda r: (r["request_id"], r["item"])) == sorted(
        [
            expected("client id/42", 0, "predict", EXAMPLE_PENGUIN, kept.json()),
            *(
                expected(made.headers["x-request-id"], i, "predict_batch", sent, answer)
                for i, (sent, answer) in enumerate(zip(batch, made.json()["predictions"], strict=True))
            ),
            expected(replaced.headers["x-request-id"], 0, "predict", GENTOO_ON_BISCOE, replaced.json()),
            *(
                expected(SEAM, i, "predict_batch", sent, answer)
                for i, (sent, answer) in enumerate(zip(batch, seam.json()["predictions"], strict=True))
            ),
        ],
        key=lambda r: (r["request_id"], r["item"]),
    )


def test_refusals_carry_the_request_id_too(artifacts_dir: Path, make_client, tmp_path: Path) -> None:
    with make_client(artifacts_dir, api_max_body_bytes=100) as client:
        too_large = client.post("/predict", content=b"{" * 200, headers={"X-Request-ID": "big"})
        assert too_large.status_code == 413 and too_large.headers["x-request-id"] == "big"
        invalid = client.post("/predict", json={"island": "Dream"}, headers={"X-Request-ID": "bad"})
        assert invalid.status_code == 422 and invalid.headers["x-request-id"] == "bad"
    with make_client(tmp_path / "nothing-yet") as empty:
        unavailable = empty.post("/predict", json=EXAMPLE_PENGUIN, headers={"X-Request-ID": "early"})
        assert unavailable.status_code == 503 and unavailable.headers["x-request-id"] == "early"
    assert not records(tmp_path / "predictions")  # nothing answered, nothing recorded


def test_predictions_log_false_writes_nothing(artifacts_dir: Path, api_server, tmp_path: Path) -> None:
    folder = tmp_path / "predictions"
    with api_server(artifacts_dir, PREDICTIONS_DIR=str(folder), PREDICTIONS_LOG="false") as url:
        answer = httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN)
        assert answer.status_code == 200 and answer.headers["x-request-id"]
        batch = httpx.post(f"{url}/predict/batch", json={"instances": [EXAMPLE_PENGUIN] * 3})
        assert batch.status_code == 200
        time.sleep(0.5)  # more than a flush period
    assert not folder.exists()


def test_two_workers_write_two_files_holding_every_answer(
    artifacts_dir: Path, api_server, tmp_path: Path
) -> None:
    folder = tmp_path / "predictions"
    answered = 0
    lock = threading.Lock()

    def load(client: int) -> None:
        nonlocal answered
        for request in range(30):
            # Fresh connections, so both workers get requests.
            if request % 3:
                response = httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN, headers={"Connection": "close"})
                count = 1
            else:
                count = 1 + (client + request) % 50
                response = httpx.post(
                    f"{url}/predict/batch",
                    json={"instances": [GENTOO_ON_BISCOE] * count},
                    headers={"Connection": "close"},
                )
            assert response.status_code == 200, response.text
            with lock:
                answered += count

    with (
        api_server(artifacts_dir, PREDICTIONS_DIR=str(folder), API_WORKERS="2") as url,
        ThreadPoolExecutor(8) as pool,
    ):
        list(pool.map(load, range(8)))
    files = read_log(folder)  # every line parses: no line was interleaved with another
    assert len(files) == 2, list(files)
    assert len({FILE_NAME.fullmatch(name).group(1) for name in files}) == 2  # one per worker process
    found = [record for file in files.values() for record in file]
    assert len(found) == answered
    assert len({(r["request_id"], r["item"]) for r in found}) == answered


def test_files_rotate_by_size_and_by_age(artifacts_dir: Path, api_server, tmp_path: Path) -> None:
    by_size, by_age = tmp_path / "by-size", tmp_path / "by-age"
    with api_server(artifacts_dir, PREDICTIONS_DIR=str(by_size), PREDICTIONS_ROTATE_BYTES="2000") as url:
        for _ in range(3):
            httpx.post(f"{url}/predict/batch", json={"instances": [EXAMPLE_PENGUIN] * 10})
            time.sleep(0.5)  # each batch is flushed alone: over 2000 bytes, so its file is closed
        httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN)
    sizes = [len(file) for file in read_log(by_size).values()]
    assert sizes == [10, 10, 10, 1]

    with api_server(artifacts_dir, PREDICTIONS_DIR=str(by_age), PREDICTIONS_ROTATE_SECONDS="1") as url:
        httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN)
        httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN)
        time.sleep(1.5)
        httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN)
    assert [len(file) for file in read_log(by_age).values()] == [2, 1]


def test_the_test_client_logs_beside_its_artifacts(client: TestClient, artifacts_dir: Path) -> None:
    """The in-process app (the other API tests) logs to its temporary folder, never to the repository."""
    client.post("/predict", json=EXAMPLE_PENGUIN)
    deadline = time.monotonic() + 5
    while not records(artifacts_dir.parent / "predictions") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(records(artifacts_dir.parent / "predictions")) == 1


def test_v2_infer_answers_are_recorded_as_predict_answers_are(
    artifacts_dir: Path, api_server, tmp_path: Path
) -> None:
    folder = tmp_path / "predictions"
    sent = [EXAMPLE_PENGUIN, GENTOO_ON_BISCOE]
    inputs = [
        {
            "name": name,
            "shape": [len(sent)],
            "datatype": "BYTES" if isinstance(EXAMPLE_PENGUIN[name], str) else "FP64",
            "data": [penguin[name] for penguin in sent],
        }
        for name in EXAMPLE_PENGUIN
    ]
    with api_server(artifacts_dir, PREDICTIONS_DIR=str(folder)) as url, httpx.Client(base_url=url) as http:
        v2 = http.post("/v2/models/penguins/infer", json={"inputs": inputs}, headers={"X-Request-ID": "v2/7"})
        batch = http.post("/predict/batch", json={"instances": sent})
    assert v2.status_code == 200 and v2.headers["x-request-id"] == "v2/7", v2.text
    found = sorted((r for r in records(folder) if r["request_id"] == "v2/7"), key=lambda r: r["item"])
    for record in found:
        del record["time"]
    # The same penguins through /predict/batch: the same model, so the same record but for id and endpoint.
    assert found == [
        expected("v2/7", i, "v2_infer", penguin, answer)
        for i, (penguin, answer) in enumerate(zip(sent, batch.json()["predictions"], strict=True))
    ]
