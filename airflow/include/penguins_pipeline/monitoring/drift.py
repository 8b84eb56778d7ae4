"""Drift statistics: recent predictions against the training split of the model that answered them.

Numeric features: the two-sample Kolmogorov-Smirnov test (any change of shape, no binning, no assumption of
normality) and the population stability index over ten bins cut at the training deciles (how much, in the
unit the industry's rules of thumb use). Categorical features and the predicted species: a chi-square test of
homogeneity on the 2 x k table of counts (training vs recent; a category missing on one side is a column with
a zero, which the test handles, unlike a goodness-of-fit test that would divide by an expected zero) and the
PSI over the categories.

The rule, the same for every feature: **drifted = p-value < DRIFT_P_VALUE and PSI >= DRIFT_PSI**. The test
alone would flag shifts too small to matter once thousands of predictions accumulate; the PSI alone is noisy
on a few dozen. Both together: a change that is real and large.
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

PSI_BINS = 10
# Shares below this count as this (an empty bin would make the PSI infinite).
PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class Thresholds:
    p_value: float
    psi: float


@dataclass(frozen=True)
class FeatureDrift:
    kind: str  # "numeric" or "categorical"
    test: str  # "ks" or "chi2"
    statistic: float
    p_value: float
    psi: float
    drifted: bool
    training: dict[str, float]  # numeric: summary statistics; categorical: share of each category
    recent: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two vectors of shares over the same bins."""
    e = np.clip(expected, PSI_FLOOR, None)
    a = np.clip(actual, PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def decile_edges(training: np.ndarray) -> np.ndarray:
    """Bin edges at the training deciles, open at both ends; repeated quantiles collapse into one edge."""
    inner = np.unique(np.quantile(training, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    return np.concatenate(([-np.inf], inner, [np.inf]))


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(values, bins=edges)
    return counts / max(len(values), 1)


def _summary(values: np.ndarray) -> dict[str, float]:
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "q25": float(q25),
        "median": float(median),
        "q75": float(q75),
    }


def numeric_drift(training: np.ndarray, recent: np.ndarray, thresholds: Thresholds) -> FeatureDrift:
    training, recent = np.asarray(training, dtype=float), np.asarray(recent, dtype=float)
    result = stats.ks_2samp(training, recent)
    edges = decile_edges(training)
    index = psi(shares(training, edges), shares(recent, edges))
    p_value = float(result.pvalue)
    return FeatureDrift(
        kind="numeric",
        test="ks",
        statistic=float(result.statistic),
        p_value=p_value,
        psi=index,
        drifted=p_value < thresholds.p_value and index >= thresholds.psi,
        training=_summary(training),
        recent=_summary(recent),
    )


def categorical_drift(training: pd.Series, recent: pd.Series, thresholds: Thresholds) -> FeatureDrift:
    train_counts = training.astype(str).value_counts()
    recent_counts = recent.astype(str).value_counts()
    categories = sorted(set(train_counts.index) | set(recent_counts.index))
    table = np.array(
        [[train_counts.get(c, 0) for c in categories], [recent_counts.get(c, 0) for c in categories]],
        dtype=float,
    )
    if len(categories) < 2:  # one category on both sides: nothing can have moved
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.chi2_contingency(table, correction=False)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    train_shares, recent_shares = table[0] / table[0].sum(), table[1] / table[1].sum()
    index = psi(train_shares, recent_shares)
    return FeatureDrift(
        kind="categorical",
        test="chi2",
        statistic=statistic,
        p_value=p_value,
        psi=index,
        drifted=p_value < thresholds.p_value and index >= thresholds.psi,
        training=dict(zip(categories, map(float, train_shares), strict=True)),
        recent=dict(zip(categories, map(float, recent_shares), strict=True)),
    )


def compare(
    training: pd.DataFrame,
    recent: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    thresholds: Thresholds,
) -> dict[str, FeatureDrift]:
    """Each column of `numeric` and `categorical` (the species too, if passed) of `recent` vs `training`."""
    result = {
        name: numeric_drift(training[name].to_numpy(), recent[name].to_numpy(), thresholds)
        for name in numeric
    }
    for name in categorical:
        result[name] = categorical_drift(training[name], recent[name], thresholds)
    return result
