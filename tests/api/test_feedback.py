"""POST /feedback against the real app: labels accepted one or many, refused with a 422 naming the field, kept
by the prediction log's own writer in files of their own (`feedback-<started>-<pid>.jsonl`), counted in
/metrics, and no extra work on the prediction path."""

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from test_prediction_log import GENTOO_ON_BISCOE, TIME, is_made_id
from test_warmup_and_metrics import value

from app.deps import FEEDBACK_NOT_KEPT
from app.model_store import NO_MODEL_YET
from app.prediction_log import JsonLinesLog
from app.schemas import EXAMPLE_PENGUIN
from penguins_contract import FEEDBACK_FIELDS, LOG_FILE_PATTERN, PREDICTION_FIELDS

PREDICTION_ID = "0123456789abcdef0123456789abcdef"


def log_files(folder: Path, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """file name -> its records, as a reader of the log takes them: only lines that end with a newline."""
    files: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob(f"{prefix}*.jsonl")):
        assert LOG_FILE_PATTERN.fullmatch(path.name), path.name
        files[path.name] = [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1]]
    return files


def feedback_records(folder: Path) -> list[dict[str, Any]]:
    found = [record for file in log_files(folder, "feedback-").values() for record in file]
    for record in found:
        assert tuple(record) == FEEDBACK_FIELDS, record  # every field, in the contract's order
        assert TIME.fullmatch(record["time"]) and is_made_id(record["feedback_id"]), record
    return found


def wait_for_records(folder: Path, count: int) -> list[dict[str, Any]]:
    """The feedback records once `count` are written (the writer flushes every 0.1 s)."""
    deadline = time.monotonic() + 10
    while len(found := feedback_records(folder)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_one_label_and_a_list_are_accepted_and_kept_as_sent(
    artifacts_dir: Path, api_server, tmp_path: Path
) -> None:
    folder = tmp_path / "predictions"
    with api_server(artifacts_dir, PREDICTIONS_DIR=str(folder)) as url, httpx.Client(base_url=url) as http:
        answered = http.post("/predict/batch", json={"instances": [EXAMPLE_PENGUIN, GENTOO_ON_BISCOE]})
        first, second = (answer["prediction_id"] for answer in answered.json()["predictions"])
        one = http.post(
            "/feedback", json={"prediction_id": first, "species": "Gentoo"}, headers={"X-Request-ID": "lab/1"}
        )
        # Any case and spaces, as island and sex: kept in the model's spelling. An id no answer carried is
        # kept too (monitor_pipeline reports it as unmatched).
        many = http.post(
            "/feedback",
            json=[
                {"prediction_id": second, "species": " gentoo "},
                {"prediction_id": PREDICTION_ID, "species": "ADELIE"},
            ],
        )
        metrics = http.get("/metrics").text
    assert one.status_code == 202 and many.status_code == 202, (one.text, many.text)
    assert one.json()["accepted"] == 1 and many.json()["accepted"] == 2
    sent = [
        (one.json()["feedback_ids"][0], first, "Gentoo", "lab/1"),
        *(
            (feedback_id, prediction_id, species, many.headers["x-request-id"])
            for feedback_id, prediction_id, species in zip(
                many.json()["feedback_ids"], [second, PREDICTION_ID], ["Gentoo", "Adelie"], strict=True
            )
        ),
    ]
    found = feedback_records(folder)  # the server stopped cleanly: everything was flushed
    assert len(log_files(folder, "feedback-")) == 1  # one worker, one file, beside the predictions'
    assert [(r["feedback_id"], r["prediction_id"], r["species"], r["request_id"]) for r in found] == sent
    (predictions,) = log_files(folder, "predictions-").values()  # the prediction log holds predictions only
    assert len(predictions) == 2 and all(tuple(r) == PREDICTION_FIELDS for r in predictions)
    assert value(metrics, "penguins_feedback_total", species="Gentoo") == 2
    assert value(metrics, "penguins_feedback_total", species="Adelie") == 1


def test_an_unknown_species_is_a_422_naming_the_field_and_nothing_is_kept(
    client: TestClient, artifacts_dir: Path
) -> None:
    labels = [
        {"prediction_id": PREDICTION_ID, "species": "Adelie"},
        {"prediction_id": PREDICTION_ID, "species": "Emperor"},
    ]
    refused = client.post("/feedback", json=labels)
    assert refused.status_code == 422
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", 1, "species"] and "Emperor" in error["msg"]
    assert set(error["ctx"]["expected"]) == {"Adelie", "Chinstrap", "Gentoo"}
    single = client.post("/feedback", json=labels[1])
    assert single.status_code == 422 and single.json()["detail"][0]["loc"] == ["body", 0, "species"]
    time.sleep(0.3)  # more than a flush period
    assert not feedback_records(artifacts_dir.parent / "predictions")  # all accepted or none


@pytest.mark.parametrize(
    "body, loc",
    [
        ({"prediction_id": "not-an-id", "species": "Adelie"}, ["body", 0, "prediction_id"]),
        ([{"prediction_id": PREDICTION_ID.upper(), "species": "Adelie"}], ["body", 0, "prediction_id"]),
        ([{"prediction_id": PREDICTION_ID}], ["body", 0, "species"]),
        ([{"prediction_id": PREDICTION_ID, "species": "Adelie", "extra": 1}], ["body", 0, "extra"]),
        ([], ["body"]),
        ("Adelie", ["body"]),
    ],
)
def test_a_malformed_label_is_a_422_naming_the_field(client: TestClient, body: object, loc: list) -> None:
    refused = client.post("/feedback", json=body)
    assert refused.status_code == 422, refused.text
    assert loc in [error["loc"] for error in refused.json()["detail"]], refused.json()


def test_more_labels_than_a_batch_holds_are_refused_before_validation(
    artifacts_dir: Path, make_client
) -> None:
    with make_client(artifacts_dir, api_max_batch_size=2) as client:
        label = {"prediction_id": PREDICTION_ID, "species": "Adelie"}
        assert client.post("/feedback", json=[label] * 2).status_code == 202
        refused = client.post("/feedback", json=[label] * 3)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body"] and "API_MAX_BATCH_SIZE" in refused.text


def test_without_a_model_or_a_log_feedback_is_a_503_saying_what_to_do(
    empty_client: TestClient, artifacts_dir: Path, make_client
) -> None:
    label = {"prediction_id": PREDICTION_ID, "species": "Adelie"}
    no_model = empty_client.post("/feedback", json=label)
    assert no_model.status_code == 503 and no_model.json()["detail"] == NO_MODEL_YET
    with make_client(artifacts_dir, predictions_log=False) as client:
        no_log = client.post("/feedback", json=label)
    assert no_log.status_code == 503 and no_log.json()["detail"] == FEEDBACK_NOT_KEPT


def test_the_prediction_path_queues_to_the_prediction_log_only(
    client: TestClient, artifacts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prediction never touches the feedback log (its own writer, lock and file), and feedback never the
    prediction log."""
    queued: list[str] = []
    original = JsonLinesLog._queue

    def spied(self: JsonLinesLog, records: Any) -> bool:
        queued.append(self.kind.name)
        return original(self, records)

    monkeypatch.setattr(JsonLinesLog, "_queue", spied)
    answer = client.post("/predict", json=EXAMPLE_PENGUIN)
    assert client.post("/predict/batch", json={"instances": [EXAMPLE_PENGUIN] * 3}).status_code == 200
    assert queued == ["prediction log", "prediction log"]
    label = {"prediction_id": answer.json()["prediction_id"], "species": "Chinstrap"}
    assert client.post("/feedback", json=label).status_code == 202
    assert queued == ["prediction log", "prediction log", "feedback log"]
    (record,) = wait_for_records(artifacts_dir.parent / "predictions", 1)
    assert (record["prediction_id"], record["species"]) == (label["prediction_id"], "Chinstrap")


def test_a_sigkill_mid_load_leaves_only_whole_labels(artifacts_dir: Path, api_server, tmp_path: Path) -> None:
    """As the prediction log's SIGKILL test (tests/reliability): whatever the kill cuts, every line that ends
    with a newline is a whole record, and a cut last line does not parse."""
    folder = tmp_path / "predictions"
    labels = [{"prediction_id": PREDICTION_ID, "species": "Adelie"}] * 2000
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                try:
                    http.post("/feedback", json=labels)
                except httpx.TransportError:
                    return  # the server is gone

    with api_server(artifacts_dir, PREDICTIONS_DIR=str(folder), API_ACCESS_LOG="false") as url:
        clients = [threading.Thread(target=load, args=(url,)) for _ in range(3)]
        for client in clients:
            client.start()
        try:
            deadline = time.monotonic() + 120
            while sum(f.stat().st_size for f in folder.glob("feedback-*.jsonl")) < 2_000_000:
                assert time.monotonic() < deadline, "no feedback written"
                time.sleep(0.05)
            (path,) = folder.glob("feedback-*.jsonl")
            os.kill(int(path.stem.rsplit("-", 1)[1]), signal.SIGKILL)  # the writing process: its pid names it
        finally:
            stop.set()
            for client in clients:
                client.join()
    data = path.read_bytes()
    found = feedback_records(folder)  # every line ending with \n parses, with every field
    assert len({r["feedback_id"] for r in found}) == len(found) >= 1000
    tail = data[data.rfind(b"\n") + 1 :]
    if tail:  # killed mid-write: a truncated last line, which the reader does not take
        with pytest.raises(json.JSONDecodeError):
            json.loads(tail)
