"""From raw rows to rows usable for training, chunk by chunk, counting every row dropped and why.

A row is dropped for the first of these reasons it meets, in this order:
  missing_value     a species, island, measure or sex is missing or blank
  unknown_category  a categorical value is none of CATEGORIES, whatever its case and surrounding spaces
  out_of_bounds     a measure is outside PHYSICAL_BOUNDS
  duplicate         same values (after normalisation) as an earlier row; the first one is kept
Categorical values are trimmed and spelled as in CATEGORIES (species and island title-case, sex lower-case).
"""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from penguins_pipeline.core.schema import (
    CATEGORIES,
    DATA_COLUMNS,
    NUMERIC_FEATURES,
    PHYSICAL_BOUNDS,
    ROW_KEY,
)

REASONS = ("missing_value", "unknown_category", "out_of_bounds", "duplicate")


@dataclass
class CleanReport:
    """Rows in, rows dropped by reason, rows out: what the clean step logs and returns."""

    rows_in: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    rows_out: int = 0

    def add(self, rows_in: int, dropped: Counter[str], rows_out: int) -> None:
        self.rows_in += rows_in
        for reason in REASONS:
            self.dropped[reason] += dropped[reason]
        self.rows_out += rows_out

    def __str__(self) -> str:
        reasons = ", ".join(f"{reason} {count}" for reason, count in self.dropped.items())
        return f"{self.rows_in} rows in, dropped: {reasons}; {self.rows_out} rows out"


class SeenRows:
    """Remembers the rows already kept, as 64-bit hashes in one sorted array: 8 bytes per row, any chunking.

    Two different rows share a hash with probability ~n²/2^65 (3e-8 for a million rows).
    """

    def __init__(self) -> None:
        self._hashes = np.empty(0, dtype=np.uint64)

    def first_seen(self, rows: pd.DataFrame) -> np.ndarray:
        """Mask of the rows seen neither earlier in `rows` nor in any earlier call; remembers them."""
        hashes = pd.util.hash_pandas_object(rows, index=False).to_numpy()
        fresh = ~pd.Series(hashes).duplicated().to_numpy()
        positions = np.minimum(np.searchsorted(self._hashes, hashes), max(len(self._hashes) - 1, 0))
        if len(self._hashes):
            fresh &= self._hashes[positions] != hashes
        # Radix sort (kind="stable" on integers): linear in the rows seen so far.
        self._hashes = np.sort(np.concatenate([self._hashes, hashes[fresh]]), kind="stable")
        return fresh


def clean_chunk(raw: pd.DataFrame, seen: SeenRows) -> tuple[pd.DataFrame, Counter[str]]:
    """The usable rows of `raw` (key + DATA_COLUMNS, normalised) and how many were dropped for each reason."""
    frame = raw[[ROW_KEY, *DATA_COLUMNS]].copy()
    missing = frame[NUMERIC_FEATURES].isna().any(axis=1)
    unknown = pd.Series(False, index=frame.index)
    for column, values in CATEGORIES.items():
        frame[column], present = _canonical(frame[column], values)
        missing |= ~present
        unknown |= present & frame[column].isna()
    out_of_bounds = pd.Series(False, index=frame.index)
    for column, (low, high) in PHYSICAL_BOUNDS.items():
        out_of_bounds |= ~frame[column].between(low, high)
    reasons = {
        "missing_value": missing,
        "unknown_category": unknown & ~missing,
        "out_of_bounds": out_of_bounds & ~missing & ~unknown,
    }
    usable = ~(missing | unknown | out_of_bounds)
    frame = frame[usable]
    first = seen.first_seen(frame[DATA_COLUMNS])
    dropped = Counter({reason: int(mask.sum()) for reason, mask in reasons.items()})
    dropped["duplicate"] = int((~first).sum())
    return frame[first].astype({column: "float64" for column in NUMERIC_FEATURES}), dropped


def _canonical(text: pd.Series, values: tuple[str, ...]) -> tuple[pd.Series, np.ndarray]:
    """`text` spelled as one of `values` (NaN if none) and the mask of non-blank values.

    Works on the distinct values only (a column holds a handful), then maps them back to the rows.
    """
    codes, distinct = pd.factorize(text)
    trimmed = pd.Series(distinct, dtype="str").str.strip()
    canonical = trimmed.str.lower().map({value.lower(): value for value in values})
    present = np.append((trimmed != "").to_numpy(), False)[codes]  # code -1 (missing) picks the False
    spelled = pd.Series(np.append(canonical.to_numpy(dtype=object), np.nan)[codes], index=text.index)
    return spelled.astype("str"), present
