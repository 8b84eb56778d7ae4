"""The prediction log, read as monitor_pipeline reads it: real servers (`python -m app`) write real files,
and the real loader takes them into the data store.

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
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.ids import new_ids
from app.schemas import EXAMPLE_PENGUIN
from penguins_contract import PREDICTION_FIELDS
from penguins_pipeline.core import store
from penguins_pipeline.monitoring import predictions_log

FILE_NAME = re.compile(r"predictions-\d{8}T\d{12}Z-(\d+)\.jsonl")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
SEAM = '"},{"prediction_id":"x'
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
            assert tuple(record) == PREDICTION_FIELDS, record  # every field, in the contract's order
            assert TIME.fullmatch(record["time"]), record["time"]
    return files


def records(folder: Path) -> list[dict[str, Any]]:
    return [record for file in read_log(folder).values() for record in file]


def is_made_id(made: str) -> bool:
    """A new uuid4, in hex: how the API makes request and prediction ids."""
    return re.fullmatch("[0-9a-f]{32}", made) is not None and uuid.UUID(hex=made).version == 4


def made_by_the_api(response: httpx.Response) -> bool:
    """The response's X-Request-ID was made by the API."""
    return is_made_id(response.headers["x-request-id"])


def expected(request_id: str, item: int, endpoint: str, sent: dict, answer: dict) -> dict[str, Any]:
    """The record of one answered penguin: what the model saw (its own category spelling) and its answer."""
    return {
        "prediction_id": answer["prediction_id"],
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
    answered = [kept.json(), *made.json()["predictions"], replaced.json(), *seam.json()["predictions"]]
    prediction_ids = {answer["prediction_id"] for answer in answered}
    assert len(prediction_ids) == len(answered) and all(map(is_made_id, prediction_ids))

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
    assert len({r["prediction_id"] for r in found}) == answered  # unique across the two processes too


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


def v2_inputs(penguins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "shape": [len(penguins)],
            "datatype": "BYTES" if isinstance(EXAMPLE_PENGUIN[name], str) else "FP64",
            "data": [penguin[name] for penguin in penguins],
        }
        for name in EXAMPLE_PENGUIN
    ]


def test_v2_infer_answers_are_recorded_as_predict_answers_are(
    artifacts_dir: Path, api_server, tmp_path: Path
) -> None:
    folder = tmp_path / "predictions"
    sent = [EXAMPLE_PENGUIN, GENTOO_ON_BISCOE]
    with api_server(artifacts_dir, PREDICTIONS_DIR=str(folder)) as url, httpx.Client(base_url=url) as http:
        v2 = http.post(
            "/v2/models/penguins/infer", json={"inputs": v2_inputs(sent)}, headers={"X-Request-ID": "v2/7"}
        )
        batch = http.post("/predict/batch", json={"instances": sent})
    assert v2.status_code == 200 and v2.headers["x-request-id"] == "v2/7", v2.text
    prediction_ids = json.loads(v2.json()["parameters"]["prediction_ids"])  # in row order
    found = sorted((r for r in records(folder) if r["request_id"] == "v2/7"), key=lambda r: r["item"])
    for record in found:
        del record["time"]
    # The same penguins through /predict/batch: the same model, so the same record but for ids and endpoint.
    assert found == [
        expected("v2/7", i, "v2_infer", penguin, {**answer, "prediction_id": prediction_id})
        for i, (penguin, answer, prediction_id) in enumerate(
            zip(sent, batch.json()["predictions"], prediction_ids, strict=True)
        )
    ]
    assert all(map(is_made_id, prediction_ids)) and len(set(prediction_ids)) == len(sent)


def test_a_reused_request_id_loses_no_record_and_a_reload_adds_none(
    artifacts_dir: Path, api_server, tmp_path: Path, db_url: str
) -> None:
    """A client that sends the same X-Request-ID every time: every penguin it had answered reaches
    `penguins_predictions` under its own prediction_id, once."""
    folder = tmp_path / "predictions"
    same = {"X-Request-ID": "fixed-header"}
    with api_server(artifacts_dir, PREDICTIONS_DIR=str(folder)) as url, httpx.Client(base_url=url) as http:
        first = http.post("/predict", json=EXAMPLE_PENGUIN, headers=same)
        second = http.post("/predict", json=GENTOO_ON_BISCOE, headers=same)
        batch = http.post("/predict/batch", json={"instances": [GENTOO_ON_BISCOE] * 2}, headers=same)
        v2 = http.post(
            "/v2/models/penguins/infer", json={"inputs": v2_inputs([EXAMPLE_PENGUIN])}, headers=same
        )
    answers = [first.json(), second.json(), *batch.json()["predictions"]]
    assert all(response.headers["x-request-id"] == "fixed-header" for response in (first, second, batch, v2))
    species_of = {answer["prediction_id"]: answer["species"] for answer in answers}
    v2_answer = v2.json()
    v2_ids = json.loads(v2_answer["parameters"]["prediction_ids"])
    species_of.update(zip(v2_ids, v2_answer["outputs"][0]["data"], strict=True))
    assert len(species_of) == 5

    engine = store.make_engine(db_url)
    try:
        loaded = predictions_log.load_folder(engine, folder)
        again = predictions_log.load_folder(engine, folder)
        predictions, _ = predictions_log.create_tables(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(predictions.c.prediction_id, predictions.c.request_id, predictions.c.species)
            )
            table = {prediction_id: (request_id, species) for prediction_id, request_id, species in rows}
    finally:
        engine.dispose()
    assert (loaded.records, loaded.duplicates) == (5, 0)
    assert (again.records, again.duplicates) == (0, 0)
    assert table == {
        prediction_id: ("fixed-header", species) for prediction_id, species in species_of.items()
    }


def test_prediction_ids_are_uuid4s_unique_in_a_big_batch() -> None:
    for count in (1, 2, 10_000):
        made = new_ids(count)
        assert len(made) == len(set(made)) == count
        assert all(map(is_made_id, made))
