"""The Open Inference Protocol (V2) for the penguins model: request tensors in, validated penguins out, and
the predictor's answers back as response tensors.

The checks are /predict's (PenguinFeatures: the contract's physical bounds, finite numbers, island and sex
among the served model's categories in any case, after strip), done column by column with numpy rather than
by pydantic row by row: a 10,000-penguin request costs a few array operations, not 10,000 validations.
Every refusal is a ProtocolError naming the input, answered as V2's `{"error": ...}`.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.schemas import PenguinFeatures
from penguins_contract import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, PHYSICAL_BOUNDS

MODEL_NAME = "penguins"
# "<project>_<format>", the spec's form of a platform name: scikit-learn objects stored with joblib.
PLATFORM = "scikit-learn_joblib"
OUTPUTS = ("species", "probabilities")
NUMERIC_DATATYPES = ("FP64", "FP32")
TEXT_DATATYPE = "BYTES"
# PenguinFeatures' CategoryName: 1 to 40 characters before the strip.
_NAME_LENGTHS = range(1, 41)
_FIELDS_SET = set(PenguinFeatures.model_fields)
_SCALARS = (str, int, float, bool)


def is_v2_path(path: str) -> bool:
    """Paths whose errors take the protocol's format, `{"error": ...}` (app/errors.py, app/middleware.py)."""
    return path == "/v2" or path.startswith("/v2/")


class ProtocolError(Exception):
    """A V2 request refused: the HTTP status and the message of the `{"error": ...}` answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad(message: str) -> ProtocolError:
    return ProtocolError(400, message)


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    penguins: list[PenguinFeatures]
    outputs: tuple[str, ...]


def parse_infer_request(body: bytes, categories: Mapping[str, Sequence[str]], max_rows: int) -> InferRequest:
    """The penguins of a V2 inference request, checked as /predict checks one; raises ProtocolError."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise _bad(f"the body is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise _bad("the body must be a JSON object: an inference request with inputs")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("id must be a string")
    _check_parameters(request.get("parameters"), "parameters")
    tensors = _named_inputs(request.get("inputs"))
    rows = {name: _row_count(name, tensor, max_rows) for name, tensor in tensors.items()}
    first = FEATURES[0]
    for name, count in rows.items():
        if count != rows[first]:
            raise _bad(
                f"input {name} has {count} rows, {first} has {rows[first]}: every input holds one value "
                "per penguin"
            )
    measures = [_measures(name, tensors[name], rows[name]) for name in NUMERIC_FEATURES]
    names = [_categories(name, tensors[name], rows[name], categories[name]) for name in CATEGORICAL_FEATURES]
    construct = PenguinFeatures.model_construct
    penguins = [
        construct(
            _FIELDS_SET,
            bill_length_mm=bill,
            bill_depth_mm=depth,
            flipper_length_mm=flipper,
            body_mass_g=mass,
            island=island,
            sex=sex,
        )
        for bill, depth, flipper, mass, island, sex in zip(*measures, *names, strict=True)
    ]
    return InferRequest(request_id, penguins, _wanted_outputs(request.get("outputs")))


def _check_parameters(parameters: Any, where: str) -> None:
    """The spec's $parameters: an object of strings, numbers and booleans (none of them is used here)."""
    if parameters is None:
        return
    if not isinstance(parameters, dict) or not all(isinstance(v, _SCALARS) for v in parameters.values()):
        raise _bad(f"{where} must be an object of strings, numbers and booleans")


def _named_inputs(inputs: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(inputs, list) or not inputs:
        raise _bad(f"inputs must be a list of input tensors, one per feature: {', '.join(FEATURES)}")
    tensors: dict[str, dict[str, Any]] = {}
    for position, tensor in enumerate(inputs):
        name = tensor.get("name") if isinstance(tensor, dict) else None
        if not isinstance(name, str):
            raise _bad(f"inputs[{position}] must be an object with a string name")
        if name not in FEATURES:
            raise _bad(f"unknown input {name!r}: the model takes {', '.join(FEATURES)}")
        if name in tensors:
            raise _bad(f"input {name} is given twice")
        _check_parameters(tensor.get("parameters"), f"input {name}: parameters")
        tensors[name] = tensor
    missing = [name for name in FEATURES if name not in tensors]
    if missing:
        raise _bad(f"missing input(s): {', '.join(missing)} (the model takes {', '.join(FEATURES)})")
    return {name: tensors[name] for name in FEATURES}


def _row_count(name: str, tensor: dict[str, Any], max_rows: int) -> int:
    """n, from a shape [n] or [n, 1], once the datatype fits the feature."""
    expected = NUMERIC_DATATYPES if name in NUMERIC_FEATURES else (TEXT_DATATYPE,)
    datatype = tensor.get("datatype")
    if datatype not in expected:
        raise _bad(f"input {name}: datatype must be {' or '.join(expected)}, not {datatype!r}")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) not in (1, 2)
        or not all(type(d) is int for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
        or shape[0] < 1
    ):
        raise _bad(f"input {name}: shape must be [n] or [n, 1] with n >= 1 penguins, not {shape!r}")
    if shape[0] > max_rows:
        raise _bad(f"input {name}: {shape[0]} rows, over API_MAX_BATCH_SIZE ({max_rows}): split the request")
    if not isinstance(tensor.get("data"), list):
        raise _bad(f"input {name}: data must be a JSON array")
    return int(shape[0])


def _measures(name: str, tensor: dict[str, Any], count: int) -> list[float]:
    """One measure for each penguin: numbers only (no strings, no booleans), within the contract's physical
    bounds. FP32 is read as the JSON numbers are, at double precision."""
    shape = tuple(tensor["shape"])
    try:
        values = np.array(tensor["data"])
    except (ValueError, TypeError, OverflowError):
        values = np.array([], dtype=object)
    if values.dtype.kind not in "iuf" or values.shape not in ((count,), shape):
        raise _bad(f"input {name}: data must hold {count} numbers, flat or nested as the shape {list(shape)}")
    column = values.reshape(count).astype(np.float64)
    low, high = PHYSICAL_BOUNDS[name]
    # JSON holds no NaN nor infinity (orjson refuses 1e999 as malformed), so the bounds are the whole check.
    outside = (column < low) | (column > high)
    if outside.any():
        position = int(outside.argmax())
        raise _bad(f"input {name}: element {position} is {column[position]:g}, outside {low:g} to {high:g}")
    measures: list[float] = column.tolist()
    return measures


def _categories(name: str, tensor: dict[str, Any], count: int, allowed: Sequence[str]) -> list[str]:
    """The served model's category for each penguin: strings of 1 to 40 characters that match one, stripped,
    in any case."""
    data = tensor["data"]
    if len(tensor["shape"]) == 2 and data and all(isinstance(v, list) and len(v) == 1 for v in data):
        data = [row[0] for row in data]
    if len(data) != count:
        raise _bad(
            f"input {name}: data must hold {count} strings, flat or nested as the shape {tensor['shape']}"
        )
    index = {category.lower(): category for category in allowed}
    found = []
    for position, value in enumerate(data):
        if not isinstance(value, str) or len(value) not in _NAME_LENGTHS:
            raise _bad(
                f"input {name}: element {position} must be a string of 1 to 40 characters, not {value!r}"
            )
        category = index.get(value.strip().lower())
        if category is None:
            raise _bad(
                f"input {name}: element {position} must be one of {', '.join(allowed)} (any case), "
                f"not {value!r}"
            )
        found.append(category)
    return found


def _wanted_outputs(outputs: Any) -> tuple[str, ...]:
    if outputs is None:
        return OUTPUTS
    if not isinstance(outputs, list):
        raise _bad('outputs must be a list of {"name": ...} objects')
    wanted: list[str] = []
    for position, output in enumerate(outputs):
        name = output.get("name") if isinstance(output, dict) else None
        if not isinstance(name, str):
            raise _bad(f"outputs[{position}] must be an object with a string name")
        if name not in OUTPUTS:
            raise _bad(f"unknown output {name!r}: the model answers {', '.join(OUTPUTS)}")
        if name in wanted:
            raise _bad(f"output {name} is asked twice")
        _check_parameters(output.get("parameters"), f"output {name}: parameters")
        wanted.append(name)
    return tuple(wanted) or OUTPUTS


def infer_response(
    request: InferRequest, answers: Sequence[Mapping[str, Any]], classes: Sequence[str], version: str
) -> dict[str, Any]:
    """The V2 answer: the asked outputs in the asked order, /predict's warnings as JSON text (a V2 parameter
    is a string, number or boolean): one list per penguin."""
    tensors = {
        "species": lambda: {
            "name": "species",
            "datatype": TEXT_DATATYPE,
            "shape": [len(answers)],
            "data": [answer["species"] for answer in answers],
        },
        "probabilities": lambda: {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [len(answers), len(classes)],
            "data": [answer["probabilities"][name] for answer in answers for name in classes],
        },
    }
    response: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": version}
    if request.id is not None:
        response["id"] = request.id
    warnings = orjson.dumps([answer["warnings"] for answer in answers]).decode()
    response["parameters"] = {"warnings": warnings}
    response["outputs"] = [tensors[name]() for name in request.outputs]
    return response


def model_metadata(
    version: str, classes: Sequence[str], categories: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """The model's V2 metadata; its parameters tell the probabilities' columns and the accepted categories."""
    inputs = [{"name": name, "datatype": "FP64", "shape": [-1, 1]} for name in NUMERIC_FEATURES]
    inputs += [{"name": name, "datatype": TEXT_DATATYPE, "shape": [-1, 1]} for name in CATEGORICAL_FEATURES]
    parameters = {"classes": orjson.dumps(list(classes)).decode()}
    parameters.update({name: orjson.dumps(list(categories[name])).decode() for name in CATEGORICAL_FEATURES})
    return {
        "name": MODEL_NAME,
        "versions": [version],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": [
            {"name": "species", "datatype": TEXT_DATATYPE, "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(classes)]},
        ],
        "parameters": parameters,
    }
