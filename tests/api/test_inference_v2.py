"""The Open Inference Protocol (V2, REST): Triton's own HTTP client against a real server, answers equal to
/predict's, shapes as the spec states them, and every bad request a 400 `{"error": ...}` naming the input."""

import asyncio
import json
import re
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from app import metrics
from app.open_inference import ProtocolError, parse_infer_request
from app.prediction_log import PredictionLog
from app.routers import inference_v2
from app.schemas import PenguinFeatures
from penguins_contract import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, SERVING_FILE
from penguins_pipeline.training import artifacts

INFER = "/v2/models/penguins/infer"
README = Path(__file__).resolve().parents[2] / "README.md"

# JSON Schemas written from the spec (kserve/open-inference-protocol, specification/protocol/inference_rest.md
# and open_inference_rest.yaml, components metadata_server_response, metadata_model_response, metadata_tensor,
# inference_response, response_output): the fields, their JSON types, which are required. `$parameters` as the
# text defines it: "$parameter = $string : $string | $number | $boolean".
_PARAMETERS = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
_TENSOR_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"enum": ["BOOL", "UINT8", "INT64", "FP32", "FP64", "BYTES"]},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["name", "datatype", "shape"],
    "additionalProperties": False,
}
SERVER_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "version", "extensions"],
    "additionalProperties": False,
}
MODEL_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _TENSOR_METADATA},
        "outputs": {"type": "array", "items": _TENSOR_METADATA},
        "parameters": _PARAMETERS,
    },
    "required": ["name", "platform", "inputs", "outputs"],
    "additionalProperties": False,
}
_TENSOR_DATA = {"type": "array", "items": {"type": ["number", "string", "boolean", "array"]}}
INFERENCE_RESPONSE = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string"},
                    "parameters": _PARAMETERS,
                    "data": _TENSOR_DATA,
                },
                "required": ["name", "shape", "datatype", "data"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["model_name", "outputs"],
    "additionalProperties": False,
}
ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
    "additionalProperties": False,
}


def _request(penguins: pd.DataFrame, nested: bool = False) -> dict[str, Any]:
    """A V2 request of these penguins: [n, 1] tensors with nested data, or [n] with flat data."""
    n = len(penguins)
    inputs = []
    for name in FEATURES:
        values = penguins[name].astype(float if name in NUMERIC_FEATURES else str).tolist()
        inputs.append(
            {
                "name": name,
                "datatype": "FP64" if name in NUMERIC_FEATURES else "BYTES",
                "shape": [n, 1] if nested else [n],
                "data": [[v] for v in values] if nested else values,
            }
        )
    return {"inputs": inputs}


def _answer(response: httpx.Response) -> dict[str, Any]:
    """A V2 answer without its prediction ids (new for every answer: one per row, in row order)."""
    answer = response.json()
    prediction_ids = json.loads(answer["parameters"].pop("prediction_ids"))
    assert len(set(prediction_ids)) == answer["outputs"][0]["shape"][0]
    return answer


def _inputs(
    penguins: pd.DataFrame, measure_type: type[np.floating[Any]], column: bool, binary: bool = False
) -> list[triton.InferInput]:
    """tritonclient's named numpy inputs, as its users build them: JSON data, or its default, binary data."""
    inputs = []
    for name in FEATURES:
        if name in NUMERIC_FEATURES:
            array = penguins[name].to_numpy(dtype=measure_type)
            datatype = "FP32" if measure_type is np.float32 else "FP64"
        else:
            array = penguins[name].astype(str).to_numpy(dtype=np.object_)
            datatype = "BYTES"
        if column:
            array = array.reshape(-1, 1)
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _outputs(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=False) for name in names]


@pytest.fixture(scope="module")
def triton_client(server: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.removeprefix("http://"))


@pytest.fixture(scope="module")
def predicted(server: str, clean_penguins: pd.DataFrame) -> tuple[list[str], np.ndarray, list[str]]:
    """/predict's answer for every penguin of the table, one request each: species, probabilities (in the
    classes' order of GET /model), classes."""
    with httpx.Client(base_url=server, timeout=30) as http:
        classes = http.get("/model").json()["classes"]
        answers = [
            http.post("/predict", json=row).json()
            for row in clean_penguins[list(FEATURES)].to_dict("records")
        ]
    probabilities = np.array([[answer["probabilities"][c] for c in classes] for answer in answers])
    return [answer["species"] for answer in answers], probabilities, classes


def test_tritonclient_sees_a_live_ready_server_and_model(
    triton_client: triton.InferenceServerClient, server: str
) -> None:
    version = httpx.get(f"{server}/model").json()["version"]
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("penguins")
    assert triton_client.is_model_ready("penguins", model_version=version)
    assert not triton_client.is_model_ready("penguins", model_version="not-" + version)
    assert not triton_client.is_model_ready("gentoo")


def test_tritonclient_reads_the_model_metadata(
    triton_client: triton.InferenceServerClient, server: str
) -> None:
    manifest = httpx.get(f"{server}/model").json()
    metadata = triton_client.get_model_metadata("penguins")
    jsonschema.validate(metadata, MODEL_METADATA)
    assert metadata["name"] == "penguins"
    # "<runtime>_<format>": what answers, the compiled walk over the serving export the version lists.
    runtime, _, file_format = metadata["platform"].partition("_")
    assert (runtime, file_format) == ("numba", Path(SERVING_FILE).suffix.lstrip("."))
    assert SERVING_FILE in manifest["files"]
    assert metadata["versions"] == [manifest["version"]]
    assert triton_client.get_model_metadata("penguins", model_version=manifest["version"]) == metadata
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [
        *((name, "FP64") for name in NUMERIC_FEATURES),
        *((name, "BYTES") for name in CATEGORICAL_FEATURES),
    ]
    assert {t["name"]: t["shape"] for t in metadata["outputs"]} == {
        "species": [-1],
        "probabilities": [-1, len(manifest["classes"])],
    }
    assert json.loads(metadata["parameters"]["classes"]) == manifest["classes"]
    categories = {c["name"]: c["categories"] for c in manifest["features"]["categorical"]}
    assert {name: json.loads(metadata["parameters"][name]) for name in CATEGORICAL_FEATURES} == categories
    with pytest.raises(InferenceServerException) as error:
        triton_client.get_model_metadata("penguins", model_version="v0")
    assert error.value.status() == "404" and "v0" in error.value.message()


@pytest.mark.parametrize(
    ("measure_type", "column", "binary"),
    [
        (np.float64, True, False),
        (np.float32, False, False),
        (np.float64, False, True),
        (np.float32, True, True),
    ],
    ids=["FP64-column", "FP32-flat", "FP64-flat-binary", "FP32-column-binary"],
)
def test_tritonclient_infer_answers_as_predict_on_the_whole_table(
    triton_client: triton.InferenceServerClient,
    server: str,
    clean_penguins: pd.DataFrame,
    predicted: tuple[list[str], np.ndarray, list[str]],
    measure_type: type[np.floating[Any]],
    column: bool,
    binary: bool,
) -> None:
    """As tritonclient's users call it: JSON tensors, or its default binary ones (answered in JSON, which it
    reads as well)."""
    species, probabilities, classes = predicted
    if measure_type is np.float32:
        # FP32 data holds the float32 nearest each measure, taken as sent: a measure on a split of the trees
        # may move to its other side. So: /predict/batch (/predict's answers) on those very values.
        rounded = clean_penguins.astype({name: np.float32 for name in NUMERIC_FEATURES})
        instances = rounded[list(FEATURES)].astype({name: float for name in NUMERIC_FEATURES})
        batch = httpx.post(
            f"{server}/predict/batch", json={"instances": instances.to_dict("records")}, timeout=30
        ).json()["predictions"]
        species = [p["species"] for p in batch]
        probabilities = np.array([[p["probabilities"][c] for c in classes] for p in batch])
    result = triton_client.infer(
        "penguins",
        _inputs(clean_penguins, measure_type, column, binary),
        outputs=_outputs("species", "probabilities") if not binary else None,
        request_id="whole-table",
    )
    response = result.get_response()
    jsonschema.validate(response, INFERENCE_RESPONSE)
    assert response["id"] == "whole-table"
    assert response["model_name"] == "penguins"
    assert result.as_numpy("species").tolist() == species
    assert result.as_numpy("probabilities").shape == (len(clean_penguins), len(classes))
    assert np.array_equal(result.as_numpy("probabilities"), probabilities)
    warnings = json.loads(response["parameters"]["warnings"])
    assert len(warnings) == len(clean_penguins) and all(isinstance(w, list) for w in warnings)


def test_tritonclient_gets_only_the_outputs_it_asks_for(
    triton_client: triton.InferenceServerClient, clean_penguins: pd.DataFrame, server: str
) -> None:
    result = triton_client.infer(
        "penguins", _inputs(clean_penguins.head(3), np.float64, True), outputs=_outputs("probabilities")
    )
    assert result.as_numpy("species") is None
    assert result.as_numpy("probabilities").shape == (3, 3)
    assert result.get_response()["model_version"] == httpx.get(f"{server}/model").json()["version"]
    with pytest.raises(InferenceServerException) as error:
        triton_client.infer(
            "penguins", _inputs(clean_penguins.head(1), np.float64, True), outputs=_outputs("pca")
        )
    assert error.value.status() == "400" and "'pca'" in error.value.message()


def test_tritonclient_hears_which_input_is_wrong(
    triton_client: triton.InferenceServerClient, clean_penguins: pd.DataFrame
) -> None:
    penguins = clean_penguins.head(2).copy()
    penguins.loc[1, "island"] = "Atlantis"
    with pytest.raises(InferenceServerException) as error:
        triton_client.infer("penguins", _inputs(penguins, np.float64, True), outputs=_outputs("species"))
    assert error.value.status() == "400"
    assert "input island: element 1" in error.value.message() and "Atlantis" in error.value.message()


def test_concurrent_small_requests_get_their_own_answers(server: str, clean_penguins: pd.DataFrame) -> None:
    """Small requests arriving together share one predict_batch (micro-batched): each still gets exactly the
    answer it gets alone, in its own order and length."""
    groups = [clean_penguins.iloc[i : i + 1 + i % 4] for i in range(0, 120, 4)]
    bodies = [{**_request(group), "id": str(i)} for i, group in enumerate(groups)]

    async def together() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=server, timeout=30) as http:
            answers = await asyncio.gather(*(http.post(INFER, json=body) for body in bodies))
        return [_answer(answer) for answer in answers]

    alone = [_answer(httpx.post(f"{server}{INFER}", json=body)) for body in bodies]
    assert asyncio.run(together()) == alone
    assert [len(answer["outputs"][0]["data"]) for answer in alone] == [len(group) for group in groups]


def test_server_metadata_and_health_follow_the_spec(server: str) -> None:
    metadata = httpx.get(f"{server}/v2")
    assert metadata.status_code == 200
    jsonschema.validate(metadata.json(), SERVER_METADATA)
    assert metadata.json()["extensions"] == []
    assert httpx.get(f"{server}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{server}/v2/models/penguins/ready").json() == {"name": "penguins", "ready": True}


def test_flat_and_nested_data_give_the_same_answer(client, clean_penguins: pd.DataFrame) -> None:
    penguins = clean_penguins.sample(25, random_state=3)
    flat = client.post(INFER, json=_request(penguins))
    nested = client.post(INFER, json=_request(penguins, nested=True))
    assert flat.status_code == nested.status_code == 200
    assert _answer(flat) == _answer(nested)
    assert "id" not in flat.json()
    batch = client.post(
        "/predict/batch", json={"instances": penguins[list(FEATURES)].to_dict("records")}
    ).json()
    assert flat.json()["outputs"][0]["data"] == [p["species"] for p in batch["predictions"]]
    assert json.loads(flat.json()["parameters"]["warnings"]) == [p["warnings"] for p in batch["predictions"]]


def test_the_columns_are_what_predict_validates(clean_penguins: pd.DataFrame) -> None:
    """Checked by column, without pydantic (app/open_inference.py): the same measures PenguinFeatures makes of
    the same penguins, and the positions of the same categories."""
    penguins = clean_penguins.head(20)
    categories = {"island": ("Biscoe", "Dream", "Torgersen"), "sex": ("female", "male")}
    parsed = parse_infer_request(json.dumps(_request(penguins)).encode(), categories, 100)
    validated = [PenguinFeatures(**row) for row in penguins[list(FEATURES)].to_dict("records")]
    assert parsed.measures.dtype == np.float64
    assert parsed.measures.tolist() == [[getattr(p, name) for name in NUMERIC_FEATURES] for p in validated]
    assert [
        [categories[name][position] for name, position in zip(CATEGORICAL_FEATURES, row, strict=True)]
        for row in parsed.categories.tolist()
    ] == [[getattr(p, name) for name in CATEGORICAL_FEATURES] for p in validated]


def test_island_and_sex_match_in_any_case_after_strip(client, clean_penguins: pd.DataFrame) -> None:
    penguins = clean_penguins.head(2)
    body = _request(penguins)
    body["inputs"][4]["data"] = [f"  {v.upper()} " for v in body["inputs"][4]["data"]]
    body["inputs"][5]["data"] = [v.title() for v in body["inputs"][5]["data"]]
    assert _answer(client.post(INFER, json=body)) == _answer(client.post(INFER, json=_request(penguins)))


def test_version_routes(client) -> None:
    version = client.get("/model").json()["version"]
    base = f"/v2/models/penguins/versions/{version}"
    assert client.get(base).json()["versions"] == [version]
    assert client.get(f"{base}/ready").json() == {"name": "penguins", "ready": True}
    body = _request(pd.DataFrame([_PENGUIN]))
    assert _answer(client.post(f"{base}/infer", json=body)) == _answer(client.post(INFER, json=body))
    for path in ("", "/ready", "/infer"):
        method = "POST" if path == "/infer" else "GET"
        other = client.request(method, f"/v2/models/penguins/versions/v1{path}", json=body)
        assert other.status_code == 404 and "v1" in other.json()["error"] and version in other.json()["error"]
        unknown = client.request(method, f"/v2/models/gentoo{path}", json=body)
        assert unknown.status_code == 404 and "'gentoo'" in unknown.json()["error"]


_PENGUIN = {
    "bill_length_mm": 46.2,
    "bill_depth_mm": 13.7,
    "flipper_length_mm": 229.0,
    "body_mass_g": 5090.0,
    "island": "Dream",
    "sex": "female",
}


def _two() -> dict[str, Any]:
    return _request(pd.DataFrame([_PENGUIN, {**_PENGUIN, "island": "Biscoe"}]))


def _set(position: int, **fields: Any) -> dict[str, Any]:
    body = _two()
    body["inputs"][position].update(fields)
    return body


BAD_REQUESTS: dict[str, tuple[Any, str]] = {
    "unknown category": (_set(4, data=["Dream", "Mars"]), "input island: element 1"),
    "category not a string": (_set(5, data=["female", 1]), "input sex: element 1"),
    "category too long": (_set(5, data=["female", "f" * 41]), "input sex: element 1"),
    "implausible value": (_set(0, data=[46.2, 4500]), "input bill_length_mm: element 1 is 4500"),
    "below the bounds": (_set(3, data=[0, 5090]), "input body_mass_g: element 0 is 0"),
    "infinite value": (b'{"inputs": [{"name": "bill_length_mm", "data": [1e999]}]}', "not valid JSON"),
    "string measure": (_set(1, data=["13.7", 13.7]), "input bill_depth_mm: data must hold 2 numbers"),
    "boolean measure": (_set(1, data=[True, False]), "input bill_depth_mm: data must hold 2 numbers"),
    "ragged data": (_set(2, shape=[2, 1], data=[[229], [229, 1]]), "input flipper_length_mm: data must hold"),
    "missing input": ({"inputs": _two()["inputs"][:5]}, "missing input(s): sex"),
    "duplicate input": (
        {"inputs": [*_two()["inputs"], _two()["inputs"][0]]},
        "input bill_length_mm is given twice",
    ),
    "unknown input": (
        {"inputs": [*_two()["inputs"], {**_two()["inputs"][0], "name": "beak"}]},
        "unknown input 'beak'",
    ),
    "wrong shape": (_set(0, shape=[1, 2]), "input bill_length_mm: shape must be [n] or [n, 1]"),
    "no rows": (_set(0, shape=[0], data=[]), "input bill_length_mm: shape must be"),
    "shape of strings": (_set(0, shape=["2"]), "input bill_length_mm: shape must be"),
    "numeric datatype for a category": (_set(4, datatype="FP64"), "input island: datatype must be BYTES"),
    "integer datatype for a measure": (
        _set(0, datatype="INT64"),
        "input bill_length_mm: datatype must be FP64 or FP32",
    ),
    "data not an array": (_set(0, data=46.2), "input bill_length_mm: data must be a JSON array"),
    "shape and data disagree": (_set(0, data=[46.2]), "input bill_length_mm: data must hold 2 numbers"),
    "strings shape and data disagree": (_set(5, data=["male"]), "input sex: data must hold 2 strings"),
    "inputs of different lengths": (
        _set(0, shape=[3], data=[46.2, 46.2, 46.2]),
        "input bill_depth_mm has 2 rows, bill_length_mm has 3",
    ),
    "unknown output": ({**_two(), "outputs": [{"name": "species"}, {"name": "pca"}]}, "unknown output 'pca'"),
    "output asked twice": ({**_two(), "outputs": [{"name": "species"}] * 2}, "output species is asked twice"),
    "id not a string": ({**_two(), "id": 42}, "id must be a string"),
    "parameters not scalars": ({**_two(), "parameters": {"a": [1]}}, "parameters must be an object"),
    "no inputs": ({"inputs": []}, "inputs must be a list"),
    "not an object": ([1, 2], "the body must be a JSON object"),
    "malformed JSON": (b'{"inputs": [', "the body is not valid JSON"),
    "not UTF-8": (b'{"id": "\xff"}', "the body is not valid JSON"),
    "empty body": (b"", "the body is not valid JSON"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_every_bad_request_is_a_400_naming_the_problem(client, case: str) -> None:
    body, expected = BAD_REQUESTS[case]
    sent = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = client.post(INFER, content=sent, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    jsonschema.validate(answer.json(), ERROR)
    assert expected in answer.json()["error"]


def _binary_request(
    measures: bytes, islands: bytes, declared: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Two penguins with bill_length_mm and island as binary data (Triton's extension), the rest JSON."""
    body = _two()
    body["inputs"][0] = {**body["inputs"][0], "parameters": {"binary_data_size": len(measures)}}
    body["inputs"][4] = {**body["inputs"][4], "parameters": {"binary_data_size": len(islands)}}
    del body["inputs"][0]["data"], body["inputs"][4]["data"]
    header = json.dumps(body).encode()
    length = str(len(header) if declared is None else declared)
    return header + measures + islands, {"Inference-Header-Content-Length": length}


def _strings(*values: bytes) -> bytes:
    return b"".join(len(v).to_bytes(4, "little") + v for v in values)


BILLS = np.array([46.2, 46.2], dtype="<f8").tobytes()
ISLANDS = _strings(b"Dream", b"Biscoe")
BAD_BINARY: dict[str, tuple[bytes, dict[str, str], str]] = {
    "NaN": (
        *_binary_request(np.array([46.2, np.nan]).tobytes(), ISLANDS),
        "input bill_length_mm: element 1 is nan, not a finite number",
    ),
    "infinity": (
        *_binary_request(np.array([np.inf, 46.2]).tobytes(), ISLANDS),
        "input bill_length_mm: element 0 is inf, not a finite number",
    ),
    "implausible": (*_binary_request(np.array([46.2, 4500]).tobytes(), ISLANDS), "element 1 is 4500"),
    "not whole FP64": (*_binary_request(BILLS[:-1], ISLANDS), "not a whole number of FP64"),
    "cut string": (*_binary_request(BILLS, ISLANDS[:-2]), "input island: its binary BYTES data ends inside"),
    "not UTF-8": (
        *_binary_request(BILLS, _strings(b"Dream", b"\xff")),
        "input island: element 1 is not UTF-8",
    ),
    "unknown island": (*_binary_request(BILLS, _strings(b"Dream", b"Mars")), "input island: element 1"),
    "more strings than the shape": (
        *_binary_request(BILLS, _strings(b"Dream", b"Biscoe", b"Dream")),
        "input island: its binary BYTES data holds more than the 2 elements of its shape",
    ),
    "header too long": (*_binary_request(BILLS, ISLANDS, declared=10**6), "does not fit a body of"),
    "header not a number": (
        _binary_request(BILLS, ISLANDS)[0],
        {"Inference-Header-Content-Length": "x"},
        "x",
    ),
    "bytes left over": (
        _binary_request(BILLS, ISLANDS)[0] + b"\0",
        _binary_request(BILLS, ISLANDS)[1],
        "1 bytes of binary data belong to no input",
    ),
}


def test_binary_data_answers_as_json_data(client) -> None:
    body, headers = _binary_request(BILLS, ISLANDS)
    assert _answer(client.post(INFER, content=body, headers=headers)) == _answer(
        client.post(INFER, json=_two())
    )


@pytest.mark.parametrize("case", BAD_BINARY, ids=list(BAD_BINARY))
def test_bad_binary_data_is_a_400_naming_the_problem(client, case: str) -> None:
    body, headers, expected = BAD_BINARY[case]
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert expected in answer.json()["error"]


SCHEMA_EDGES: dict[str, dict[str, Any]] = {
    "output named empty": {**_two(), "outputs": [{"name": ""}]},
    "unknown output": {**_two(), "outputs": [{"name": "pca"}]},
    "three outputs": {**_two(), "outputs": [{"name": "species"}] * 3},
    "no inputs": {"inputs": []},
    "five inputs": {"inputs": _two()["inputs"][:5]},
    "an unknown input": {"inputs": [*_two()["inputs"][:5], {**_two()["inputs"][5], "name": "beak"}]},
}


@pytest.mark.parametrize("case", SCHEMA_EDGES, ids=list(SCHEMA_EDGES))
def test_the_documented_request_refuses_what_infer_refuses(client, case: str) -> None:
    """/docs' V2InferenceRequest: what infer answers 400 at these edges is outside the schema too
    (schemathesis' coverage phase sent the first and the fourth as schema-valid)."""
    components = client.get("/openapi.json").json()["components"]
    schema = {"$ref": "#/components/schemas/V2InferenceRequest", "components": components}
    assert jsonschema.Draft202012Validator(schema).is_valid(_two())
    assert not jsonschema.Draft202012Validator(schema).is_valid(SCHEMA_EDGES[case])
    assert client.post(INFER, json=SCHEMA_EDGES[case]).status_code == 400


def test_binary_strings_are_read_up_to_the_shape_never_beyond() -> None:
    """4 MB of empty strings sent as the island of 2 penguins: refused at the third string, without building
    the other million first (the memory traced while the body is read stays far below the body's size)."""
    many = _strings(*[b""] * 1_000_000)
    body, headers = _binary_request(BILLS, many)
    categories = {"island": ["Biscoe", "Dream", "Torgersen"], "sex": ["female", "male"]}
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="more than the 2 elements of its shape"):
            parse_infer_request(body, categories, 10_000, int(headers["Inference-Header-Content-Length"]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(many) / 8, f"{peak} bytes allocated to refuse a body of {len(body)}"


def on_the_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_a_big_request_is_counted_logged_and_answered_off_the_event_loop(client, monkeypatch) -> None:
    """Where the metrics, the log records and the answer of a request are built: in the worker thread that
    scored a big request (on the event loop they would stall every other request for as long); a small one
    stays on the loop, micro-batched."""
    where: dict[str, list[bool]] = {}

    def spy(what: str, original: Any) -> Any:
        def spied(*args: Any, **kwargs: Any) -> Any:
            where.setdefault(what, []).append(on_the_event_loop())
            return original(*args, **kwargs)

        return spied

    monkeypatch.setattr(metrics, "count_species", spy("metrics", metrics.count_species))
    monkeypatch.setattr(PredictionLog, "record_scores", spy("log", PredictionLog.record_scores))
    monkeypatch.setattr(inference_v2, "infer_response", spy("answer", inference_v2.infer_response))
    big = json.dumps(_request(pd.DataFrame([_PENGUIN] * 1000))).encode()
    assert len(big) > inference_v2.INLINE_BODY_BYTES
    answer = client.post(INFER, content=big, headers={"content-type": "application/json"})
    assert answer.status_code == 200
    assert len(answer.json()["outputs"][0]["data"]) == 1000
    assert client.post(INFER, json=_two()).status_code == 200
    assert where == {"metrics": [False, True], "log": [False, True], "answer": [False, True]}


ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
# A real request with one field of one input (or of the request) replaced: validation is hit deep.
V2_LIKE = st.builds(
    lambda position, field, value: (
        {**_two(), field: value} if position < 0 else _set(position, **{field: value})
    ),
    st.integers(-1, 5),
    st.sampled_from(["name", "shape", "datatype", "data", "parameters", "id", "inputs", "outputs"]),
    ANY_VALUE,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=V2_LIKE | ANY_VALUE)
def test_whatever_is_sent_the_answer_is_200_or_a_v2_400(client, body: Any) -> None:
    answer = client.post(INFER, content=json.dumps(body), headers={"content-type": "application/json"})
    assert answer.status_code in (200, 400), (body, answer.text)
    if answer.status_code == 400:
        jsonschema.validate(answer.json(), ERROR)
    else:
        jsonschema.validate(answer.json(), INFERENCE_RESPONSE)


def test_the_batch_limit_applies(make_client, artifacts_dir: Path) -> None:
    with make_client(artifacts_dir, api_max_batch_size=2, api_max_batch_body_bytes=2000) as client:
        assert client.post(INFER, json=_two()).status_code == 200
        three = _request(pd.DataFrame([_PENGUIN] * 3))
        answer = client.post(INFER, json=three)
        assert answer.status_code == 400
        assert "input bill_length_mm: 3 rows, over API_MAX_BATCH_SIZE (2)" in answer.json()["error"]
        big = _request(pd.DataFrame([_PENGUIN] * 100))
        too_large = client.post(INFER, json=big)
        assert too_large.status_code == 413 and "over 2000 bytes" in too_large.json()["error"]
        # The versioned route has the same (batch) limit, larger than the API's default for other routes.
        version = client.get("/model").json()["version"]
        assert client.post(f"/v2/models/penguins/versions/{version}/infer", json=big).status_code == 413


def test_only_v2_routes_answer_in_the_v2_error_format(client) -> None:
    assert client.post("/predict", content=b"{").status_code == 422
    assert "detail" in client.post("/predict", json={**_PENGUIN, "island": "Mars"}).json()
    wrong_method = client.get(INFER)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert client.get("/v2/nothing-here").json() == {"error": "Not Found"}


def test_infer_counts_predictions_like_predict(client) -> None:
    def gentoos() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith('penguins_predictions_total{species="Gentoo"}'):
                return float(line.split()[-1])
        return 0.0

    before = gentoos()
    answer = client.post(INFER, json=_request(pd.DataFrame([_PENGUIN] * 4))).json()
    assert answer["outputs"][0]["data"] == ["Gentoo"] * 4
    assert gentoos() == before + 4


def test_without_a_model_v2_says_to_train(empty_client) -> None:
    assert empty_client.get("/v2/health/live").status_code == 200
    for method, path in [
        ("GET", "/v2/health/ready"),
        ("GET", "/v2/models/penguins"),
        ("GET", "/v2/models/penguins/ready"),
        ("POST", INFER),
    ]:
        answer = empty_client.request(method, path, json=_two())
        assert answer.status_code == 503, path
        assert "run train_pipeline" in answer.json()["error"]


def test_the_docs_list_the_v2_routes(client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        operation = next(iter(paths[path].values()))
        assert operation["tags"] == ["open inference protocol (v2)"], path
    infer = paths["/v2/models/{model_name}/infer"]["post"]
    body = infer["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/V2InferenceRequest"}
    assert {"V2InferenceRequest", "V2RequestInput", "V2InferenceResponse"} <= set(
        schema["components"]["schemas"]
    )
    assert client.post(INFER, json=body["example"]).status_code == 200


def test_a_promotion_swaps_the_v2_model_too(client, artifacts_dir: Path, versions) -> None:
    first = client.get("/v2/models/penguins").json()["versions"]
    assert first == [versions.main]
    artifacts.promote(artifacts_dir, versions.other)
    assert client.post("/warmup").status_code == 200
    assert client.get("/v2/models/penguins").json()["versions"] == [versions.other]
    assert client.post(INFER, json=_two()).json()["model_version"] == versions.other
    assert client.get(f"/v2/models/penguins/versions/{versions.main}").status_code == 404


def test_the_readme_v2_example_gets_the_readme_answer(client) -> None:
    """The README's curl to /v2/models/penguins/infer, sent as it is, gets the answer printed after it."""
    text = README.read_text()
    command = re.search(r"```bash\n(curl [^`]*?/v2/models/penguins/infer[^`]*?)```", text, flags=re.S)
    assert command, "the README has no curl example of V2 infer"
    sent = re.search(r"-d '(\{.*?\})'", command[1], flags=re.S)
    printed = re.search(r"```json\n(.*?)```", text[command.end() :], flags=re.S)
    assert sent and printed
    expected = json.loads(printed[1])
    answer = client.post(INFER, content=sent[1].encode()).json()
    assert re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{8}", expected["model_version"])
    answer["model_version"] = expected["model_version"]  # the time of training: differs from run to run
    assert len(json.loads(answer["parameters"]["prediction_ids"])) == 1
    answer["parameters"]["prediction_ids"] = expected["parameters"]["prediction_ids"]  # new for every answer
    probabilities = next(o for o in answer["outputs"] if o["name"] == "probabilities")
    probabilities["data"] = [round(p, 9) for p in probabilities["data"]]
    assert answer == expected
