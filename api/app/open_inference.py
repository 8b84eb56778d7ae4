"""The Open Inference Protocol (V2) for the penguins model: request tensors in, validated columns out, and
the predictor's scores back as response tensors.

The checks are /predict's (PenguinFeatures: the contract's physical bounds, finite numbers, island and sex
among the served model's categories in any case, after strip), done column by column with numpy rather than
by pydantic row by row: a 10,000-penguin request costs a few array operations, not 10,000 validations, and
goes to the predictor as columns (`Predictor.score`), with no object per penguin on the way.
Every refusal is a ProtocolError naming the input, answered as V2's `{"error": ...}`.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import PurePath
from typing import Any

import numpy as np
import orjson

from app.predictor import Predictor, Scores
from app.schemas import CATEGORY_NAME_MAX, CATEGORY_NAME_MIN
from app.schemas import V2_OUTPUTS as OUTPUTS
from penguins_contract import (
    CATEGORICAL_FEATURES,
    FEATURES,
    NUMERIC_FEATURES,
    PHYSICAL_BOUNDS,
    SERVING_FILE,
)

MODEL_NAME = "penguins"
# "<runtime>_<format>", the spec's form of a platform name: what answers is the walk numba compiled (ahead of
# time) over the arrays of the serving export (serving.npz), not the scikit-learn objects of the joblib files.
PLATFORM = f"numba_{PurePath(SERVING_FILE).suffix.lstrip('.')}"
NUMERIC_DATATYPES = ("FP64", "FP32")
TEXT_DATATYPE = "BYTES"
_NAME_LENGTHS = range(CATEGORY_NAME_MIN, CATEGORY_NAME_MAX + 1)
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
    measures: np.ndarray  # (n, 4) float64, in NUMERIC_FEATURES order
    categories: np.ndarray  # (n, 2) positions among the model's islands and sexes
    outputs: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.measures)


def parse_infer_request(
    body: bytes, categories: Mapping[str, Sequence[str]], max_rows: int, json_length: int | None = None
) -> InferRequest:
    """The penguins of a V2 inference request as columns, checked as /predict checks one; raises
    ProtocolError.

    `json_length` (Triton's binary tensor extension, tritonclient's default): the body is that many bytes of
    JSON, then the data of the inputs whose parameters give a `binary_data_size`, in their order.
    """
    binary = memoryview(b"")
    if json_length is not None:
        if not 0 <= json_length <= len(body):
            raise _bad(
                f"Inference-Header-Content-Length {json_length} does not fit a body of {len(body)} bytes"
            )
        body, binary = body[:json_length], memoryview(body)[json_length:]  # the binary data is not copied
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
    # Each input's n from its shape, bounded by API_MAX_BATCH_SIZE, before any binary data is unpacked: a
    # binary BYTES tensor is then read up to its n strings, never to however many the bytes could hold.
    rows = {name: _row_count(name, tensor, max_rows) for name, tensor in tensors.items()}
    if json_length is not None:
        _unpack_binary(request["inputs"], binary, rows)
    for name, tensor in tensors.items():
        if not isinstance(tensor.get("data"), list | np.ndarray):
            raise _bad(f"input {name}: data must be a JSON array (or binary data)")
    first = FEATURES[0]
    for name, count in rows.items():
        if count != rows[first]:
            raise _bad(
                f"input {name} has {count} rows, {first} has {rows[first]}: every input holds one value "
                "per penguin"
            )
    measures = np.column_stack([_measures(name, tensors[name], rows[name]) for name in NUMERIC_FEATURES])
    positions = np.column_stack(
        [_categories(name, tensors[name], rows[name], categories[name]) for name in CATEGORICAL_FEATURES]
    )
    return InferRequest(request_id, measures, positions, _wanted_outputs(request.get("outputs")))


def _unpack_binary(inputs: list[dict[str, Any]], binary: memoryview, rows: Mapping[str, int]) -> None:
    """Give each input sent as binary its data, decoded: little-endian FP64 or FP32, or BYTES as 4-byte
    little-endian lengths each followed by that many bytes of UTF-8 (at most `rows[name]` strings)."""
    offset = 0
    for tensor in inputs:
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        name = tensor["name"]
        if type(size) is not int or not 0 <= size <= len(binary) - offset:
            raise _bad(f"input {name}: binary_data_size {size!r} does not fit the binary data sent")
        chunk, offset = binary[offset : offset + size], offset + size
        datatype = tensor.get("datatype")
        if datatype in NUMERIC_DATATYPES:
            item = 8 if datatype == "FP64" else 4
            if size % item:
                raise _bad(f"input {name}: {size} bytes of binary data is not a whole number of {datatype}")
            tensor["data"] = np.frombuffer(chunk, dtype="<f8" if item == 8 else "<f4")
        elif datatype == TEXT_DATATYPE:
            tensor["data"] = _binary_strings(name, chunk, rows[name])
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} bytes of binary data belong to no input's binary_data_size")


def _binary_strings(name: str, chunk: memoryview, count: int) -> list[str]:
    strings: list[str] = []
    position = 0
    while position < len(chunk):
        if len(strings) == count:
            raise _bad(
                f"input {name}: its binary BYTES data holds more than the {count} elements of its shape"
            )
        length = int.from_bytes(chunk[position : position + 4], "little")
        start, position = position + 4, position + 4 + length
        if position > len(chunk):
            raise _bad(f"input {name}: its binary BYTES data ends inside an element")
        try:
            strings.append(str(chunk[start:position], "utf-8"))
        except UnicodeDecodeError:
            raise _bad(f"input {name}: element {len(strings)} is not UTF-8 text") from None
    return strings


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
    return int(shape[0])


def _measures(name: str, tensor: dict[str, Any], count: int) -> np.ndarray:
    """One measure for each penguin: numbers only (no strings, no booleans), finite, within the contract's
    physical bounds. FP32 is read as the JSON numbers are, at double precision."""
    shape = tuple(tensor["shape"])
    try:
        values = np.array(tensor["data"])
    except (ValueError, TypeError, OverflowError):
        values = np.array([], dtype=object)
    if values.dtype.kind not in "iuf" or values.shape not in ((count,), shape):
        raise _bad(f"input {name}: data must hold {count} numbers, flat or nested as the shape {list(shape)}")
    column = values.reshape(count).astype(np.float64)
    low, high = PHYSICAL_BOUNDS[name]
    outside = ~((column >= low) & (column <= high))  # NaN too (binary data can hold one; JSON cannot)
    if outside.any():
        position = int(outside.argmax())
        why = f"outside {low:g} to {high:g}" if np.isfinite(column[position]) else "not a finite number"
        raise _bad(f"input {name}: element {position} is {column[position]:g}, {why}")
    return column


def _categories(name: str, tensor: dict[str, Any], count: int, allowed: Sequence[str]) -> np.ndarray:
    """The position among the served model's categories of each penguin's: strings of 1 to 40 characters
    that match one, stripped, in any case. Each distinct string is checked once (a column holds a few)."""
    data = tensor["data"]
    if len(tensor["shape"]) == 2 and data and all(isinstance(v, list) and len(v) == 1 for v in data):
        data = [row[0] for row in data]
    if len(data) != count:
        raise _bad(
            f"input {name}: data must hold {count} strings, flat or nested as the shape {tensor['shape']}"
        )
    index = {category.lower(): position for position, category in enumerate(allowed)}
    known: dict[str, int] = {}
    found = []
    for position, value in enumerate(data):
        if type(value) is str and value in known:
            found.append(known[value])
            continue
        if not isinstance(value, str) or len(value) not in _NAME_LENGTHS:
            raise _bad(
                f"input {name}: element {position} must be a string of {CATEGORY_NAME_MIN} to "
                f"{CATEGORY_NAME_MAX} characters, not {value!r}"
            )
        category = index.get(value.strip().lower())
        if category is None:
            raise _bad(
                f"input {name}: element {position} must be one of {', '.join(allowed)} (any case), "
                f"not {value!r}"
            )
        known[value] = category
        found.append(category)
    return np.array(found, dtype=np.intp)


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


def answer_groups(predictor: Predictor) -> Callable[[Sequence[InferRequest]], list[Scores]]:
    """For the micro-batcher (app/batching.py): the penguins of several small requests scored in one call,
    each request given back its own rows (a penguin's scores do not depend on its batch)."""

    def answer(requests: Sequence[InferRequest]) -> list[Scores]:
        scores = predictor.score(
            np.concatenate([r.measures for r in requests]), np.concatenate([r.categories for r in requests])
        )
        ends = list(accumulate(map(len, requests)))
        return [
            Scores(
                scores.rows[end - len(request) : end],
                scores.probabilities[end - len(request) : end],
                scores.best[end - len(request) : end],
                scores.warnings[end - len(request) : end],
            )
            for request, end in zip(requests, ends, strict=True)
        ]

    return answer


def infer_response(
    request: InferRequest,
    scores: Scores,
    classes: Sequence[str],
    version: str,
    prediction_ids: Sequence[str],
) -> dict[str, Any]:
    """The V2 answer: the asked outputs in the asked order; /predict's warnings (one list per penguin) and
    the penguins' prediction ids as JSON text (a V2 parameter is a string, number or boolean)."""
    tensors = {
        "species": lambda: {
            "name": "species",
            "datatype": TEXT_DATATYPE,
            "shape": [len(request)],
            "data": [classes[best] for best in scores.best.tolist()],
        },
        "probabilities": lambda: {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [len(request), len(classes)],
            "data": scores.probabilities.ravel().tolist(),
        },
    }
    response: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": version}
    if request.id is not None:
        response["id"] = request.id
    response["parameters"] = {
        "warnings": orjson.dumps(scores.warnings).decode(),
        "prediction_ids": orjson.dumps(prediction_ids).decode(),
    }
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
