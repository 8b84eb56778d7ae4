"""Every request and response body of the API, so /docs shows exactly what the code accepts and answers."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from penguins_contract import PHYSICAL_BOUNDS

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
CategoryName = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(str.strip)]


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
    include_neighbors: bool = Field(False, description="Also find the 5 nearest training penguins of each")


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
