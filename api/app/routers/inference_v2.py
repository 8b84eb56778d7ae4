"""The Open Inference Protocol (V2, REST) of KServe, Triton and MLServer, so their clients work unchanged.

Model `penguins`; its versions are the served one only (a promotion changes it, with the same hot swap as
/predict). Every error is V2's `{"error": ...}` (app/errors.py gives all /v2 paths that format). The tensors'
checks and shapes live in app/open_inference.py.
"""

import re
from typing import Annotated, Any

import orjson
from anyio import to_thread
from fastapi import APIRouter, Path, Request, Response
from pydantic.json_schema import models_json_schema

from app import metrics
from app.deps import RecorderDep, SettingsDep, StoreDep
from app.ids import new_ids
from app.model_store import NO_MODEL_YET, ModelStore
from app.open_inference import (
    MODEL_NAME,
    InferRequest,
    ProtocolError,
    infer_response,
    model_metadata,
    parse_infer_request,
)
from app.prediction_log import RequestRecorder
from app.predictor import Predictor, Scores
from app.responses import json_response
from app.schemas import (
    EXAMPLE_PENGUIN,
    V2Error,
    V2InferenceRequest,
    V2InferenceResponse,
    V2ModelMetadata,
    V2ModelReady,
    V2ServerLive,
    V2ServerMetadata,
    V2ServerReady,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
# Both infer paths, for the body limit (app/main.py): they take batches, as /predict/batch does.
INFER_PATH = re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?/infer")
# A request this small is parsed on the event loop and micro-batched (a thread hop would cost more than the
# work); a bigger one is parsed and answered in a worker thread, as /predict/batch is.
INLINE_BODY_BYTES = 16 * 1024
# Triton's binary tensor extension (tritonclient's default): the length of the JSON before the binary data.
# Binary inputs are read; answers are always JSON, which tritonclient reads as well.
BINARY_HEADER = "inference-header-content-length"


# Documented as the one model served; any other name is still read, and answered with V2's 404.
ModelName = Annotated[str, Path(json_schema_extra={"enum": [MODEL_NAME]}, description="The model: penguins")]


def _error(description: str) -> dict[str, Any]:
    return {"model": V2Error, "description": description}


_NO_MODEL: dict[int | str, dict[str, Any]] = {503: _error(NO_MODEL_YET)}
_MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _error("Unknown model name, or a version other than the served one"),
    **_NO_MODEL,
}
_INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("A bad request, the input or the reason named in `error`"),
    413: _error("Body over API_MAX_BATCH_BODY_BYTES"),
    **_MODEL_ERRORS,
}
_EXAMPLE_REQUEST = {
    "id": "42",
    "inputs": [
        {"name": name, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]}
        for name, v in EXAMPLE_PENGUIN.items()
    ],
    "outputs": [{"name": "species"}, {"name": "probabilities"}],
}
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/V2InferenceRequest"},
                "example": _EXAMPLE_REQUEST,
            }
        },
    }
}


def document(schema: dict[str, Any]) -> None:
    """Put the inference request's schemas into the OpenAPI components: the route reads its body itself (one
    orjson parse, checks by column), so FastAPI does not know the model."""
    _, definitions = models_json_schema(
        [(V2InferenceRequest, "validation")], ref_template="#/components/schemas/{model}"
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions["$defs"])


def _served(store: ModelStore, model_name: ModelName, version: str | None = None) -> Predictor:
    """The served predictor, read once, if the URL names it; else the V2 error."""
    if model_name != MODEL_NAME:
        raise ProtocolError(404, f"unknown model {model_name!r}: this server serves {MODEL_NAME!r}")
    predictor = store.predictor
    if predictor is None:
        raise ProtocolError(503, NO_MODEL_YET)
    if version is not None and version != predictor.version:
        raise ProtocolError(
            404,
            f"model {MODEL_NAME} has no version {version!r} here: the served version is {predictor.version}",
        )
    return predictor


@router.get("", response_model=V2ServerMetadata)
async def server_metadata(request: Request) -> Response:
    """The server's name and version. No extension declared: binary tensors are read, but answers are JSON."""
    return json_response({"name": request.app.title, "version": request.app.version, "extensions": []})


@router.get("/health/live", response_model=V2ServerLive)
async def server_live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready", response_model=V2ServerReady, responses=_NO_MODEL)
async def server_ready(store: StoreDep) -> Response:
    """200 only while a model is served, as /ready."""
    if store.predictor is None:
        raise ProtocolError(503, NO_MODEL_YET)
    return json_response({"ready": True})


def _metadata(predictor: Predictor) -> Response:
    return json_response(model_metadata(predictor.version, predictor.classes, predictor.encoder.categories))


def _ready() -> Response:
    return json_response({"name": MODEL_NAME, "ready": True})


@router.get("/models/{model_name}", response_model=V2ModelMetadata, responses=_MODEL_ERRORS)
async def model_meta(model_name: ModelName, store: StoreDep) -> Response:
    """Inputs, outputs and the served version; `parameters` holds the classes (the probabilities' columns)
    and the categories of island and sex, each as JSON text."""
    return _metadata(_served(store, model_name))


@router.get(
    "/models/{model_name}/versions/{model_version}", response_model=V2ModelMetadata, responses=_MODEL_ERRORS
)
async def model_version_meta(model_name: ModelName, model_version: str, store: StoreDep) -> Response:
    return _metadata(_served(store, model_name, model_version))


@router.get("/models/{model_name}/ready", response_model=V2ModelReady, responses=_MODEL_ERRORS)
async def model_ready(model_name: ModelName, store: StoreDep) -> Response:
    _served(store, model_name)
    return _ready()


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    response_model=V2ModelReady,
    responses=_MODEL_ERRORS,
)
async def model_version_ready(model_name: ModelName, model_version: str, store: StoreDep) -> Response:
    _served(store, model_name, model_version)
    return _ready()


@router.post(
    "/models/{model_name}/infer",
    response_model=V2InferenceResponse,
    responses=_INFER_ERRORS,
    openapi_extra=_REQUEST_BODY,
)
async def infer(
    model_name: ModelName, request: Request, store: StoreDep, settings: SettingsDep, record: RecorderDep
) -> Response:
    """Species and probabilities of n penguins, given as one tensor per feature (shape [n] or [n, 1]).

    `parameters.warnings` of the answer is JSON text: a list with one list per penguin of /predict's warnings.
    """
    return await _answer(store, _served(store, model_name), request, settings.api_max_batch_size, record)


@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    response_model=V2InferenceResponse,
    responses=_INFER_ERRORS,
    openapi_extra=_REQUEST_BODY,
)
async def infer_version(
    model_name: ModelName,
    model_version: str,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    record: RecorderDep,
) -> Response:
    """As /v2/models/penguins/infer, if the URL names the served version."""
    return await _answer(
        store, _served(store, model_name, model_version), request, settings.api_max_batch_size, record
    )


async def _answer(
    store: ModelStore, predictor: Predictor, request: Request, max_rows: int, record: RequestRecorder
) -> Response:
    # Read with the predictor, no await in between: the batcher of that very version.
    batcher = store.group_batcher
    json_length = _json_length(request.headers.get(BINARY_HEADER))
    body = await request.body()
    if len(body) <= INLINE_BODY_BYTES and batcher is not None:
        # Small requests arriving together are scored in one call, as /predict's are.
        inference = parse_infer_request(body, predictor.encoder.categories, max_rows, json_length)
        answer = _finish(predictor, inference, await batcher.submit(inference), record)
    else:
        answer = await to_thread.run_sync(_predict, predictor, body, max_rows, json_length, record)
    return Response(answer, media_type="application/json")


def _json_length(header: str | None) -> int | None:
    if header is None:
        return None
    try:
        return int(header)
    except ValueError:
        raise ProtocolError(
            400, f"Inference-Header-Content-Length must be a number of bytes, not {header!r}"
        ) from None


def _predict(
    predictor: Predictor, body: bytes, max_rows: int, json_length: int | None, record: RequestRecorder
) -> bytes:
    """A big request, all of it in a worker thread: validated columns, scores, then `_finish`. Its log records
    and its answer cost as much as its scoring: built on the event loop, they would stall every other
    request (a /health probe included) for as long."""
    inference = parse_infer_request(body, predictor.encoder.categories, max_rows, json_length)
    return _finish(predictor, inference, predictor.score(inference.measures, inference.categories), record)


def _finish(predictor: Predictor, inference: InferRequest, scores: Scores, record: RequestRecorder) -> bytes:
    """Scored penguins counted, given their prediction ids, logged, and answered as JSON bytes."""
    metrics.count_species(predictor.classes[best] for best in scores.best.tolist())
    prediction_ids = new_ids(len(inference))
    record.scores("v2_infer", inference.measures, inference.categories, scores, predictor, prediction_ids)
    return orjson.dumps(
        infer_response(inference, scores, predictor.classes, predictor.version, prediction_ids)
    )
