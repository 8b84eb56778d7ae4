"""Every request and response body of the API, so /docs shows exactly what the code accepts and answers."""

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)
from pydantic.config import JsonDict

from penguins_contract import FEATURES, PHYSICAL_BOUNDS, PREDICTION_ID_PATTERN

# The original README's curl example: a Gentoo-sized bird on Dream, where no Gentoo lives.
EXAMPLE_PENGUIN: JsonDict = {
    "bill_length_mm": 46.2,
    "bill_depth_mm": 13.7,
    "flipper_length_mm": 229,
    "body_mass_g": 5090,
    "island": "Dream",
    "sex": "Female",
}


def _measure(name: str, description: str) -> Any:
    """The contract's hard limits, the very numbers cleaning keeps: every value trained on is accepted, typos
    (4500 mm of bill, a mass in kg) are not."""
    low, high = PHYSICAL_BOUNDS[name]
    return Field(ge=low, le=high, allow_inf_nan=False, description=f"{description} ({low:g} to {high:g})")


# Stripped by Python's str.strip after the length check: app/openapi.py publishes exactly this rule.
# An island or sex as sent, before the strip; V2's BYTES tensors follow the same rule (open_inference.py).
CATEGORY_NAME_MIN, CATEGORY_NAME_MAX = 1, 40
CategoryName = Annotated[
    str, Field(min_length=CATEGORY_NAME_MIN, max_length=CATEGORY_NAME_MAX), AfterValidator(str.strip)
]


class PenguinFeatures(BaseModel):
    """One penguin. Island and sex match the model's categories in any case ("Female" is "female")."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_PENGUIN]})

    bill_length_mm: float = _measure("bill_length_mm", "Culmen length, mm")
    bill_depth_mm: float = _measure("bill_depth_mm", "Culmen depth, mm")
    flipper_length_mm: float = _measure("flipper_length_mm", "Flipper length, mm")
    body_mass_g: float = _measure("body_mass_g", "Body mass, g")
    island: CategoryName = Field(description="One of the model's islands, e.g. Biscoe, Dream, Torgersen")
    sex: CategoryName = Field(description="One of the model's sexes: female or male")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[PenguinFeatures] = Field(min_length=1, description="At most API_MAX_BATCH_SIZE penguins")
    # Strict: 0, 1, "true" are not booleans in the schema, so they are refused, not coerced.
    include_neighbors: StrictBool = Field(
        False, description="Also find the 5 nearest training penguins of each"
    )


class FeedbackLabel(BaseModel):
    """The true species of one answered penguin, addressed by the prediction_id its answer carried."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(
        description="The prediction_id of the answer this label corrects or confirms",
        pattern=f"^{PREDICTION_ID_PATTERN.pattern}$",
    )
    species: CategoryName = Field(
        description="The true species: one of the served model's classes (any case)"
    )


def _one_or_many(body: Any) -> Any:
    """A single label is a list of one: its errors name `body[0]...` as a list's first label's would."""
    return [body] if isinstance(body, dict) else body


# POST /feedback's body: one label or a list of them (at most API_MAX_BATCH_SIZE, checked before validation;
# app/openapi.py documents the single one, which FastAPI's schema of the list leaves out).
FeedbackBody = Annotated[list[FeedbackLabel], BeforeValidator(_one_or_many), Field(min_length=1)]


class FeedbackAccepted(BaseModel):
    accepted: int = Field(description="Labels accepted (all of the request's)")
    feedback_ids: list[str] = Field(description="Each label's new feedback_id, in the order sent")


class PcaPoint(BaseModel):
    x: float
    y: float


class Neighbor(BaseModel):
    bill_length_mm: float
    bill_depth_mm: float
    flipper_length_mm: float
    body_mass_g: float
    island: str
    sex: str
    species: str
    distance: float = Field(description="Euclidean distance in the model's preprocessed feature space")
    pca: PcaPoint = Field(description="Its position on the PCA chart")


class PredictionWarning(BaseModel):
    code: Literal["outside_training_range", "near_tie", "species_not_seen_on_island"]
    field: str | None = Field(None, description="The input field the warning is about, if any")
    message: str


class Prediction(BaseModel):
    prediction_id: str = Field(
        description="Made by the server, unique to this answered penguin (the key of its prediction log "
        "record)",
        pattern=f"^{PREDICTION_ID_PATTERN.pattern}$",
    )
    species: str
    probabilities: dict[str, float] = Field(description="Species -> probability; they sum to 1")
    neighbors: list[Neighbor] | None = Field(
        description="The 5 nearest training penguins, nearest first (null in a batch asked without them)"
    )
    pca: PcaPoint = Field(description="The penguin on the 2-D PCA chart of the training points")
    model_version: str
    warnings: list[PredictionWarning]


class BatchPrediction(BaseModel):
    model_version: str
    predictions: list[Prediction]


class TrainingPoints(BaseModel):
    """The chart's training points, column-wise; `species` holds positions in `classes`."""

    model_version: str
    classes: list[str]
    pca1: list[float]
    pca2: list[float]
    species: list[int]
    bill_length_mm: list[float]
    bill_depth_mm: list[float]
    flipper_length_mm: list[float]
    body_mass_g: list[float]
    island: list[str]
    sex: list[str]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    model_version: str | None
    detail: str | None = None


class ServedVersion(BaseModel):
    """What a swap did: the version now served, the one before, and whether it changed."""

    model_version: str
    previous_version: str | None
    changed: bool


class ErrorMessage(BaseModel):
    detail: str


# --- Open Inference Protocol (V2), written from the spec's REST text (kserve/open-inference-protocol,
# specification/protocol/inference_rest.md): field names, optionality and JSON types as it states them. ---

# "$parameter = $string : $string | $number | $boolean": lists travel as JSON text (routers/inference_v2.py).
V2Parameters = dict[str, StrictStr | StrictInt | StrictFloat | StrictBool]
V2_DATATYPES = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]


class V2Error(BaseModel):
    """Every failed V2 request: "$inference_error_response" (and the metadata error objects)."""

    error: str


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2ServerLive(BaseModel):
    live: bool


class V2ServerReady(BaseModel):
    # The spec's text shows {"live": ...} here, a slip its own servers (KServe, Triton) do not follow.
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2MetadataTensor(BaseModel):
    name: str
    datatype: V2_DATATYPES
    shape: list[int] = Field(description="-1 for a variable dimension (the number of penguins)")


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="The served version, the one a versioned URL may name")
    platform: str
    inputs: list[V2MetadataTensor]
    outputs: list[V2MetadataTensor]
    parameters: V2Parameters = Field(
        description="classes: the probabilities' columns, island and sex: their categories (JSON text each)"
    )


# The outputs a V2 request may ask for, in their default order.
V2_OUTPUTS = ("species", "probabilities")


class V2RequestInput(BaseModel):
    name: str = Field(
        description="A feature: bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g, island or sex",
        json_schema_extra={"enum": list(FEATURES)},
    )
    shape: list[Annotated[int, Field(ge=0)]] = Field(description="[n] or [n, 1]: n penguins")
    datatype: V2_DATATYPES = Field(description="FP64 or FP32 for the measures, BYTES for island and sex")
    parameters: V2Parameters | None = None
    data: list[Any] = Field(description="n values, flat or nested as the shape ([[v], [v], ...])")


class V2RequestOutput(BaseModel):
    name: str = Field(description="species or probabilities", json_schema_extra={"enum": list(V2_OUTPUTS)})
    parameters: V2Parameters | None = None


class V2InferenceRequest(BaseModel):
    id: str | None = Field(None, description="Echoed in the answer")
    parameters: V2Parameters | None = None
    # The schema says what the code checks, as far as JSON Schema can: six inputs named after the features,
    # outputs named after the outputs (each once, and inputs of one n: the code's alone).
    inputs: list[V2RequestInput] = Field(
        min_length=len(FEATURES),
        max_length=len(FEATURES),
        description="The six features, each once, all with the same n",
    )
    outputs: list[V2RequestOutput] | None = Field(
        None, max_length=len(V2_OUTPUTS), description="Which outputs to answer, each once; all by default"
    )


class V2ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: V2_DATATYPES
    parameters: V2Parameters | None = None
    data: list[str] | list[float] = Field(
        description="Row-major, flat: species names, or n x k probabilities"
    )


class V2InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = Field(None, description="The request's id, when it had one")
    parameters: V2Parameters = Field(
        description="warnings: JSON text of a list with one list per penguin of /predict's warnings "
        '({"code", "field", "message"}); prediction_ids: JSON text of a list of each penguin\'s '
        "prediction_id, in row order"
    )
    outputs: list[V2ResponseOutput]
