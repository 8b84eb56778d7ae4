"""POST /warmup's token, and the Prometheus metrics (also summed across several workers)."""

import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.schemas import EXAMPLE_PENGUIN


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (sample, have), v in samples(text).items() if sample == name and wanted <= have)


def test_warmup_needs_the_token_when_one_is_set(artifacts_dir: Path, make_client, versions) -> None:
    with make_client(artifacts_dir, warmup_token="s3cret") as client:
        missing = client.post("/warmup")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert client.post("/warmup", headers={"Authorization": "Bearer nope"}).status_code == 403
        assert client.post("/warmup", headers={"Authorization": "Basic czNjcmV0"}).status_code == 401
        ok = client.post("/warmup", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert ok.json()["model_version"] == versions.main


def test_an_empty_token_means_no_token(artifacts_dir: Path, make_client) -> None:
    with make_client(artifacts_dir, warmup_token="") as client:
        assert client.post("/warmup").status_code == 200


def test_requests_predictions_and_model_are_counted(client: TestClient, versions) -> None:
    before = client.get("/metrics").text
    for _ in range(3):
        client.post("/predict", json=EXAMPLE_PENGUIN)
    client.post("/predict", json={**EXAMPLE_PENGUIN, "island": "Mars"})
    client.post("/predict/batch", json={"instances": [EXAMPLE_PENGUIN] * 5})
    client.get("/no/such/page")
    client.request("BREW", "/predict")
    after = client.get("/metrics").text

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("http_requests_total", route="/predict", method="POST", status="200") == 3
    assert grew("http_requests_total", route="/predict", method="POST", status="422") == 1
    assert grew("http_requests_total", route="unmatched", status="404") == 1
    assert grew("http_requests_total", route="/predict", method="OTHER", status="405") == 1
    assert grew("http_request_duration_seconds_count", route="/predict/batch", status="200") == 1
    species = client.post("/predict", json=EXAMPLE_PENGUIN).json()["species"]
    assert grew("penguins_predictions_total", species=species) == 8
    assert value(after, "penguins_model_info", version=versions.main) == 1


def test_several_workers_report_the_whole_server(artifacts_dir: Path, api_server, versions) -> None:
    with api_server(artifacts_dir, API_WORKERS="2") as url:
        with httpx.Client(base_url=url) as http:
            # Fresh connections spread over both workers.
            for _ in range(40):
                http.post("/predict", json=EXAMPLE_PENGUIN, headers={"Connection": "close"})
            pids: set[str | None] = set()
            deadline = time.monotonic() + 60  # a worker reports once its own first load is done
            while len(pids - {None}) < 2 and time.monotonic() < deadline:
                text = http.get("/metrics", headers={"Connection": "close"}).text
                total = value(text, "http_requests_total", route="/predict", status="200")
                assert total == 40, text
                pids |= {
                    dict(labels).get("pid")
                    for (name, labels), v in samples(text).items()
                    if name == "penguins_model_info"
                }
                time.sleep(0.2)
        assert len(pids - {None}) == 2  # both workers serve (and report) the model
