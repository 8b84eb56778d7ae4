"""The fitted ColumnTransformer as plain arithmetic: scaled measures, then one-hot island, then one-hot sex.

On one row, sklearn's ColumnTransformer costs ~2 ms (DataFrame checks, column selection, hstack); the same
float64 operations in the same order cost microseconds and give identical bits, which the loader checks.
"""

from collections.abc import Sequence
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
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self._mean = tuple(float(m) for m in scaler.mean_) if scaler.with_mean else (0.0,) * len(numeric)
        self._scale = tuple(float(s) for s in scaler.scale_) if scaler.with_std else (1.0,) * len(numeric)
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
        # The one-hot block of each category value, ready to append to a row.
        self._one_hot = {field: np.eye(len(cats)).tolist() for field, cats in self.categories.items()}
        self.width = len(numeric) + sum(len(c) for c in self.categories.values())

    def category_index(self, field: str, value: str) -> int:
        """Position of `value` among the model's categories of `field`, ignoring case."""
        try:
            return self._index[field][value.strip().lower()]
        except KeyError:
            raise UnknownCategoryError(field, value, self.categories[field]) from None

    def category_positions(self, field: str, values: Sequence[str]) -> np.ndarray:
        """`category_index` of many values at once; an unknown one raises with its position."""
        index = self._index[field]
        positions = [index.get(value.strip().lower(), -1) for value in values]
        if -1 in positions:
            position = positions.index(-1)
            raise UnknownCategoryError(field, values[position], self.categories[field], position)
        return np.array(positions, dtype=np.intp)

    def encode_one(self, measures: Sequence[float], category_indices: Sequence[int]) -> np.ndarray:
        """One float64 row; Python float arithmetic is the same IEEE float64 arithmetic as the scaler's."""
        values = [(v - m) / s for v, m, s in zip(measures, self._mean, self._scale, strict=True)]
        for field, index in zip(self.categorical, category_indices, strict=True):
            values += self._one_hot[field][index]
        return np.array(values)

    def encode_many(self, measures: np.ndarray, category_indices: np.ndarray) -> np.ndarray:
        """Rows of float64 from an (n, measures) array and an (n, categorical) array of category positions."""
        rows = np.zeros((len(measures), self.width))
        rows[:, : len(self.numeric)] = (measures - np.array(self._mean)) / np.array(self._scale)
        start = len(self.numeric)
        for column, field in enumerate(self.categorical):
            rows[np.arange(len(rows)), start + category_indices[:, column]] = 1.0
            start += len(self.categories[field])
        return rows

    def category_indices(self, frame: Any) -> np.ndarray:
        """(n, categorical) positions for a DataFrame of category names (training data, trusted)."""
        return np.column_stack(
            [
                frame[field].astype(str).str.lower().map(self._index[field]).to_numpy(dtype=np.intp)
                for field in self.categorical
            ]
        )
