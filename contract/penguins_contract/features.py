"""The model's input features and the physical limits of a penguin: cleaning keeps only rows inside the
bounds, and the API rejects requests outside them, so the two must be the very same numbers."""

from collections.abc import Mapping
from types import MappingProxyType

NUMERIC_FEATURES: tuple[str, ...] = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
CATEGORICAL_FEATURES: tuple[str, ...] = ("island", "sex")
FEATURES: tuple[str, ...] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)

# Physically plausible ranges for any penguin of these three species (generous: rejects typos such as
# 4500 mm of bill or a body mass in kg, not rare birds). Training ranges are narrower and live in the
# manifest. Read-only: neither side may widen them alone.
PHYSICAL_BOUNDS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "bill_length_mm": (20.0, 80.0),
        "bill_depth_mm": (8.0, 30.0),
        "flipper_length_mm": (140.0, 260.0),
        "body_mass_g": (1500.0, 8000.0),
    }
)
