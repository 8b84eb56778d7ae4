"""The fitted ColumnTransformer as plain arithmetic: scaled measures, then one-hot island, then one-hot sex.

On one row, sklearn's ColumnTransformer spends nearly all its time on DataFrame checks, column selection and
hstack; the same float64 operations in the same order, done directly, give identical bits, which the loader
checks.
"""

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np


class UnknownCategoryError(ValueError):
    def __init__(self, field: str, value: str, allowed: Sequence[str], position: int | None = None) -> None:
        super().__init__(f"{field} must be one of {', '.join(allowed)} (any case), not {value!r}")
        self.field = field
        self.value = value
        self.allowed = list(allowed)
        self.position = position  # which penguin of a batch


class FeatureEncoder:
    """Turns measures and category names into the model's feature space, as the preprocessor does."""

    def __init__(self, preprocessor: Any, numeric: Sequence[str], categorical: Sequence[str]) -> None:
        fitted = [(transformer, list(columns)) for name, transformer, columns in preprocessor.transformers_]
        fitted = [(t, c) for t, c in fitted if t != "drop" and c]
        if [c for _, c in fitted] != [list(numeric), list(categorical)]:
            raise ValueError(
                f"the preprocessor must transform {list(numeric)} then {list(categorical)}, "
                f"it transforms {[c for _, c in fitted]}"
            )
        scaler, one_hot = fitted[0][0], fitted[1][0]
        if not hasattr(scaler, "scale_") or not hasattr(one_hot, "categories_"):
            raise ValueError("the preprocessor must be a StandardScaler then a OneHotEncoder")
        self.categorical = tuple(categorical)
        count = len(numeric)
        self._mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else np.zeros(count)
        self._scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else np.ones(count)
        self.categories = {
            field: tuple(str(c) for c in cats)
            for field, cats in zip(categorical, one_hot.categories_, strict=True)
        }
        self._index = {}
        for field, cats in self.categories.items():
            lowered = {c.lower(): i for i, c in enumerate(cats)}
            if len(lowered) != len(cats):
                raise ValueError(f"{field} has categories that differ only by case: {cats}")
            self._index[field] = lowered
        # A known category, lowered -> the model's own spelling ("FEMALE".lower() -> "female").
        self.spelling = {field: {c.lower(): c for c in cats} for field, cats in self.categories.items()}
        # Row i of each table is the one-hot block of category i.
        self._one_hot = {field: np.eye(len(cats)) for field, cats in self.categories.items()}

    def category_positions(self, field: str, values: Sequence[str]) -> list[int]:
        """Positions of `values` among the model's categories of `field`, ignoring case; an unknown value
        raises with its position."""
        positions = list(map(self._index[field].get, map(str.lower, values), repeat(-1)))
        if -1 in positions:
            position = positions.index(-1)
            raise UnknownCategoryError(field, values[position], self.categories[field], position)
        return positions

    def encode_many(self, measures: np.ndarray, category_indices: np.ndarray) -> np.ndarray:
        """float64 rows from an (n, measures) array and an (n, categorical) array of category positions:
        the scaler's arithmetic (subtract the mean, divide by the scale), then the one-hot blocks."""
        scaled = (measures - self._mean) / self._scale
        blocks = [self._one_hot[field][category_indices[:, i]] for i, field in enumerate(self.categorical)]
        return np.concatenate([scaled, *blocks], axis=1)

    def category_indices(self, frame: Any) -> np.ndarray:
        """(n, categorical) positions for a DataFrame of category names (training data, trusted)."""
        return np.column_stack(
            [
                frame[field].astype(str).str.lower().map(self._index[field]).to_numpy(dtype=np.intp)
                for field in self.categorical
            ]
        )
