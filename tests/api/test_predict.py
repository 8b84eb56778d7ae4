"""POST /predict and /predict/batch through the app with its lifespan: answers, warnings, every bad input."""

import json

import pytest
from fastapi.testclient import TestClient

from app.schemas import EXAMPLE_PENGUIN as EXAMPLE  # the original README's curl example

ADELIE = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181,
    "body_mass_g": 3750,
    "island": "Torgersen",
    "sex": "male",
}


def codes(answer: dict) -> list[str]:
    return [warning["code"] for warning in answer["warnings"]]


def test_answer_has_everything_the_contract_promises(client: TestClient) -> None:
    answer = client.post("/predict", json=ADELIE).json()
    version = client.get("/ready").json()["model_version"]
    assert answer["species"] == "Adelie"
    assert answer["model_version"] == version
    assert set(answer["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)
    assert set(answer["pca"]) == {"x", "y"}
    assert answer["warnings"] == []
    neighbors = answer["neighbors"]
    assert len(neighbors) == 5
    assert [n["distance"] for n in neighbors] == sorted(n["distance"] for n in neighbors)
    for neighbor in neighbors:
        assert set(neighbor) == {*ADELIE, "species", "distance", "pca"}
        assert neighbor["sex"] in {"female", "male"}


def test_the_original_curl_example_carries_its_warnings(client: TestClient) -> None:
    answer = client.post("/predict", json=EXAMPLE).json()
    assert answer["species"] in {"Gentoo", "Chinstrap"}
    assert "near_tie" in codes(answer)
    island = [w for w in answer["warnings"] if w["code"] == "species_not_seen_on_island"]
    if answer["species"] == "Gentoo":
        assert island and "Dream" in island[0]["message"]


def test_island_and_sex_match_in_any_case(client: TestClient) -> None:
    reference = client.post("/predict", json=ADELIE).json()
    shouted = client.post("/predict", json={**ADELIE, "island": "TORGERSEN", "sex": " Male "}).json()
    assert shouted["probabilities"] == reference["probabilities"]


def test_a_plausible_value_outside_the_training_range_is_answered_with_a_warning(client: TestClient) -> None:
    manifest = client.get("/model").json()
    flipper = next(f for f in manifest["features"]["numeric"] if f["name"] == "flipper_length_mm")
    answer = client.post("/predict", json={**ADELIE, "flipper_length_mm": flipper["max"] + 10})
    assert answer.status_code == 200
    warning = next(w for w in answer.json()["warnings"] if w["code"] == "outside_training_range")
    assert warning["field"] == "flipper_length_mm"
    assert f"{flipper['max']:g}" in warning["message"]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("island", "Atlantis", "Biscoe, Dream, Torgersen"),
        ("sex", "unknown", "female, male"),
        ("island", "", "at least 1 character"),
        ("bill_length_mm", 4500, "less than or equal to 80"),
        ("body_mass_g", 5.09, "greater than or equal to 1500"),
        ("bill_depth_mm", "deep", "valid number"),
        ("flipper_length_mm", None, "valid number"),
        ("bill_depth_mm", float("nan"), "finite number"),
        ("body_mass_g", float("inf"), "finite number"),
    ],
)
def test_a_bad_value_is_a_422_naming_its_field(
    client: TestClient, field: str, value: object, words: str
) -> None:
    body = json.dumps(
        {**ADELIE, field: value}
    )  # json.dumps writes NaN and Infinity as Python's json reads them
    answer = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", field]
    assert words in error["msg"]


def test_missing_and_unknown_fields_are_named(client: TestClient) -> None:
    missing = client.post("/predict", json={k: v for k, v in ADELIE.items() if k != "sex"})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "sex"]
    typo = client.post("/predict", json={**ADELIE, "bill_lenght_mm": 40})
    assert typo.status_code == 422
    assert ["body", "bill_lenght_mm"] in [e["loc"] for e in typo.json()["detail"]]


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b"null", '{"island": "\u00e9"}'.encode()])
def test_malformed_bodies_are_422_never_500(client: TestClient, body: bytes) -> None:
    answer = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert "Traceback" not in answer.text


# Bodies FastAPI cannot even decode (its own answer would be a 400 naming nothing): what the 422 says.
UNDECODABLE = {
    "not_utf8": (b'{"island": "\xff\xfe"}', "not UTF-8"),
    "gzip": (b"\x1f\x8b\x08\x00garbage", "not UTF-8"),
    "nested_too_deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize("name", list(UNDECODABLE))
def test_an_undecodable_body_is_a_422_naming_the_body(client: TestClient, path: str, name: str) -> None:
    body, words = UNDECODABLE[name]
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert (error["type"], error["loc"]) == ("json_invalid", ["body"])
    assert words in error["msg"]


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_malformed_json_is_a_422_naming_the_body(client: TestClient, path: str) -> None:
    answer = client.post(path, content=b'{"island": "Dream",}', headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["type"] == "json_invalid"
    assert error["loc"] == ["body", 19]  # FastAPI's own: where the JSON text goes wrong


def test_other_http_errors_keep_their_status(client: TestClient) -> None:
    assert client.get("/predict").status_code == 405
    assert client.get("/no-such-page").json() == {"detail": "Not Found"}


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    huge = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    answer = client.post("/predict", content=huge, headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert "bytes" in answer.json()["detail"]


def test_a_streamed_body_without_length_cannot_pass_the_limit(client: TestClient) -> None:
    def chunks():
        for _ in range(20):
            yield b" " * 100_000

    answer = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413


def test_batch_answers_each_penguin_as_predict_does(client: TestClient) -> None:
    penguins = [ADELIE, EXAMPLE, {**ADELIE, "island": "biscoe"}]
    batch = client.post("/predict/batch", json={"instances": penguins, "include_neighbors": True})
    assert batch.status_code == 200
    assert batch.json()["model_version"] == client.get("/ready").json()["model_version"]
    for penguin, answer in zip(penguins, batch.json()["predictions"], strict=True):
        alone = client.post("/predict", json=penguin).json()
        assert answer.pop("prediction_id") != alone.pop("prediction_id")  # each answer its own
        assert answer == alone  # the same bits, chart position too


def test_batch_without_neighbors_by_default(client: TestClient) -> None:
    answers = client.post("/predict/batch", json={"instances": [ADELIE] * 40}).json()["predictions"]
    assert len(answers) == 40
    assert all(a["neighbors"] is None and a["species"] == "Adelie" for a in answers)


def test_batch_limits(client: TestClient) -> None:
    empty = client.post("/predict/batch", json={"instances": []})
    assert empty.status_code == 422
    assert empty.json()["detail"][0]["loc"] == ["body", "instances"]
    too_many = client.post("/predict/batch", json={"instances": [ADELIE] * 10_001})
    assert too_many.status_code == 422
    assert "10000" in too_many.json()["detail"][0]["msg"]
    full = client.post("/predict/batch", json={"instances": [ADELIE] * 10_000})
    assert full.status_code == 200
    assert len(full.json()["predictions"]) == 10_000


def test_an_oversized_batch_is_refused_before_any_instance_is_validated(make_client, artifacts_dir) -> None:
    """Counted first: the invalid instance among too many is never looked at, only the count is refused."""
    invalid = {**ADELIE, "bill_length_mm": "long", "island": 7}
    with make_client(artifacts_dir, api_max_batch_size=3) as client:
        answer = client.post("/predict/batch", json={"instances": [ADELIE, invalid, ADELIE, ADELIE]})
        assert client.post("/predict/batch", json={"instances": [ADELIE] * 3}).status_code == 200
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [(error["type"], error["loc"]) for error in detail] == [("too_long", ["body", "instances"])]
    assert "at most 3 instances" in detail[0]["msg"]


@pytest.mark.parametrize("flag", [0, 1, "true"])
def test_include_neighbors_is_a_json_boolean_as_the_schema_says(client: TestClient, flag: object) -> None:
    answer = client.post("/predict/batch", json={"instances": [ADELIE], "include_neighbors": flag})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "include_neighbors"]


def test_batch_names_the_instance_with_an_unknown_category(client: TestClient) -> None:
    answer = client.post("/predict/batch", json={"instances": [ADELIE, ADELIE, {**ADELIE, "island": "Mars"}]})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "instances", 2, "island"]


def test_model_and_training_points(client: TestClient) -> None:
    manifest = client.get("/model").json()
    assert manifest["version"] == client.get("/ready").json()["model_version"]
    assert manifest["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    points = client.get("/model/training-points")
    body = points.json()
    assert body["model_version"] == manifest["version"]
    assert len(body["pca1"]) == len(body["species"]) == len(body["island"]) == manifest["data"]["rows_train"]
    etag = points.headers["etag"]
    assert manifest["version"] in etag
    again = client.get("/model/training-points", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    stale = client.get(
        "/model/training-points", headers={"If-None-Match": '"20000101T000000000000Z-00000000"'}
    )
    assert stale.status_code == 200


def test_openapi_documents_the_contract(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {
        "/predict",
        "/predict/batch",
        "/model",
        "/model/training-points",
        "/ready",
        "/health",
        "/warmup",
    } <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
