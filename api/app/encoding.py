"""The fitted ColumnTransformer as plain arithmetic: scaled measures, then one-hot island, then one-hot sex.

On one row, sklearn's ColumnTransformer spends nearly all its time on DataFrame checks, column selection and
hstack; the same float64 operations in the same order, done directly, give identical bits, which the
Predictor checks on the serving export's reference rows. Built from the export's arrays (no scikit-learn).
"""

from collections.abc import Sequence
from itertools import repeat

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

    def __init__(self, mean: np.ndarray, scale: np.ndarray, categories: dict[str, tuple[str, ...]]) -> None:
        if mean.shape != scale.shape or mean.ndim != 1 or not np.all(scale != 0):
            raise ValueError(f"scaler mean {mean.shape} and scale {scale.shape} differ, or a scale is 0")
        self.categorical = tuple(categories)
        self._mean = np.asarray(mean, dtype=np.float64)
        self._scale = np.asarray(scale, dtype=np.float64)
        self.categories = dict(categories)
        self._index = {}
        for field, cats in self.categories.items():
            lowered = {c.lower(): i for i, c in enumerate(cats)}
            if len(lowered) != len(cats) or not cats:
                raise ValueError(f"{field} has no categories, or categories that differ only by case: {cats}")
            self._index[field] = lowered
        # A known category, lowered -> the model's own spelling ("FEMALE".lower() -> "female").
        self.spelling = {field: {c.lower(): c for c in cats} for field, cats in self.categories.items()}
        # Row i of each table is the one-hot block of category i.
        self._one_hot = {field: np.eye(len(cats)) for field, cats in self.categories.items()}

    def columns(self, numeric: Sequence[str]) -> list[str]:
        """The output columns, named as the serving export names them: measures, then `field=category`."""
        return [*numeric, *(f"{field}={c}" for field, cats in self.categories.items() for c in cats)]

    def category_positions(self, field: str, values: Sequence[str]) -> list[int]:
        """Positions of `values` among the model's categories of `field`, ignoring case; an unknown value
        raises with its position."""
        positions = list(map(self._index[field].get, map(str.lower, values), repeat(-1)))
        if -1 in positions:
            position = positions.index(-1)
            raise UnknownCategoryError(field, values[position], self.categories[field], position)
        return positions

    def position(self, field: str, value: str) -> int:
        """The position of one request's `value` among the model's categories of `field`, ignoring case; an
        unknown value raises, naming no position in a batch."""
        found = self._index[field].get(value.lower())
        if found is None:
            raise UnknownCategoryError(field, value, self.categories[field])
        return found

    def encode_many(self, measures: np.ndarray, category_indices: np.ndarray) -> np.ndarray:
        """float64 rows from an (n, measures) array and an (n, categorical) array of category positions:
        the scaler's arithmetic (subtract the mean, divide by the scale), then the one-hot blocks."""
        scaled = (measures - self._mean) / self._scale
        blocks = [self._one_hot[field][category_indices[:, i]] for i, field in enumerate(self.categorical)]
        return np.concatenate([scaled, *blocks], axis=1)
