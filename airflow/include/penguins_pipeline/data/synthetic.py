"""`synthetic:<rows>`: realistic penguins in any number for scale tests; the same rows for the same count.

Resamples the real penguins species by species (each block keeps their proportions exactly), moves every
measure by a little Gaussian noise (a tenth of its spread within the species) and rounds it as the real data
is rounded. Rows with a missing value are resampled too, so the raw table keeps realistic gaps to clean.
"""

from collections.abc import Iterator
from typing import cast

import numpy as np
import pandas as pd

from penguins_pipeline.core.schema import NUMERIC_FEATURES
from penguins_pipeline.data.sources import SourceError, conform

BLOCK_ROWS = 50_000
SEED = 344
NOISE = 0.1
DECIMALS = {"bill_length_mm": 1, "bill_depth_mm": 1, "flipper_length_mm": 0, "body_mass_g": 0}


def synthetic_chunks(rows: int) -> Iterator[pd.DataFrame]:
    """`rows` penguins in blocks of BLOCK_ROWS; block k is always drawn from the same seed (SEED, k)."""
    if rows < 0:
        raise SourceError(f"synthetic:<rows> needs a row count of 0 or more, not {rows}")
    import palmerpenguins

    real = conform(palmerpenguins.load_penguins(), "palmerpenguins")
    by_species = {species: group.reset_index(drop=True) for species, group in real.groupby("species")}
    shares = pd.Series({species: len(group) for species, group in by_species.items()}) / len(real)
    spread = real.groupby("species")[NUMERIC_FEATURES].std()
    for block, start in enumerate(range(0, rows, BLOCK_ROWS)):
        rng = np.random.default_rng([SEED, block])
        parts = []
        for label, count in apportion(min(BLOCK_ROWS, rows - start), shares).items():
            species = cast(str, label)  # the species names; pandas-stubs types a Series' labels as Hashable
            group = by_species[species]
            part = group.iloc[rng.integers(0, len(group), count)].reset_index(drop=True)
            noise = rng.normal(
                0.0, NOISE * spread.loc[species].to_numpy(), size=(count, len(NUMERIC_FEATURES))
            )
            part[NUMERIC_FEATURES] = (part[NUMERIC_FEATURES] + noise).round(DECIMALS)
            parts.append(part)
        shuffled = pd.concat(parts, ignore_index=True)
        yield shuffled.iloc[rng.permutation(len(shuffled))].reset_index(drop=True)


def apportion(total: int, shares: pd.Series) -> pd.Series:
    """Whole counts summing to `total` in the proportions `shares` (largest remainders get the leftovers)."""
    exact = shares * total
    counts = np.floor(exact).astype(int)
    leftovers = (exact - counts).sort_values(ascending=False).index[: total - counts.sum()]
    counts[leftovers] += 1
    return counts
