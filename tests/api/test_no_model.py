"""Before the first training: alive, not ready, and every model route says what to do instead of failing."""

from fastapi.testclient import TestClient

from app.schemas import EXAMPLE_PENGUIN as EXAMPLE


def test_alive_but_not_ready(empty_client: TestClient) -> None:
    assert empty_client.get("/health").json() == {"status": "ok"}
    ready = empty_client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready"
    assert "train_pipeline" in ready.json()["detail"]


def test_model_routes_answer_503_telling_to_run_train_pipeline(empty_client: TestClient) -> None:
    answers = [
        empty_client.post("/predict", json=EXAMPLE),
        empty_client.post("/predict/batch", json={"instances": [EXAMPLE]}),
        empty_client.get("/model"),
        empty_client.get("/model/training-points"),
        empty_client.post("/warmup"),
    ]
    for answer in answers:
        assert answer.status_code == 503, answer.request.url
        assert "run train_pipeline" in answer.json()["detail"]


def test_page_docs_and_metrics_work_without_a_model(empty_client: TestClient) -> None:
    page = empty_client.get("/")
    assert "penguin-form" in page.text
    # Only the page's own scripts run (the browser tests would see any violation as a console error).
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert empty_client.get("/docs").status_code == 200
    assert empty_client.get("/metrics").status_code == 200
