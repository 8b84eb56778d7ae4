"""Drift statistics on seeded data: a shift either way is flagged, no shift is not; numeric features,
categorical features and the predicted species alike."""

import numpy as np
import pandas as pd
import pytest
from prediction_logs import shifted

from penguins_pipeline.core.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from penguins_pipeline.monitoring import drift

THRESHOLDS = drift.Thresholds(p_value=0.01, psi=0.2)


def judge(training: pd.DataFrame, recent: pd.DataFrame) -> dict[str, drift.FeatureDrift]:
    return drift.compare(training, recent, NUMERIC_FEATURES, [*CATEGORICAL_FEATURES, "species"], THRESHOLDS)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_sample_of_the_training_data_does_not_drift(clean_penguins: pd.DataFrame, seed: int) -> None:
    judged = judge(clean_penguins, shifted(clean_penguins, 200, seed))
    assert {name: result.drifted for name, result in judged.items() if result.drifted} == {}
    assert all(result.p_value > 0.01 and result.psi < 0.2 for result in judged.values())


@pytest.mark.parametrize("sigmas", [1.0, -1.0])
@pytest.mark.parametrize("feature", NUMERIC_FEATURES)
def test_a_numeric_shift_either_way_is_flagged_and_only_there(
    clean_penguins: pd.DataFrame, feature: str, sigmas: float
) -> None:
    judged = judge(clean_penguins, shifted(clean_penguins, 200, 7, **{feature: sigmas}))
    assert [name for name, result in judged.items() if result.drifted] == [feature]
    moved = judged[feature]
    assert (moved.kind, moved.test) == ("numeric", "ks")
    assert moved.p_value < 1e-6 and moved.psi > 0.2 and moved.statistic > 0.2
    assert np.sign(moved.recent["mean"] - moved.training["mean"]) == np.sign(sigmas)


def test_a_small_numeric_shift_on_many_records_is_significant_but_not_drift(
    clean_penguins: pd.DataFrame,
) -> None:
    # Thousands of predictions make a fifth of a standard deviation "significant"; the PSI says it is small.
    moved = judge(clean_penguins, shifted(clean_penguins, 20_000, 3, body_mass_g=0.2))["body_mass_g"]
    assert moved.p_value < 0.01
    assert moved.psi < 0.2
    assert not moved.drifted


@pytest.mark.parametrize(
    ("feature", "value"), [("island", "Torgersen"), ("island", "Biscoe"), ("sex", "female"), ("sex", "male")]
)
def test_a_categorical_shift_is_flagged(clean_penguins: pd.DataFrame, feature: str, value: str) -> None:
    recent = shifted(clean_penguins, 200, 5)
    recent.loc[recent.index[:150], feature] = value
    judged = judge(clean_penguins, recent)
    assert [name for name, result in judged.items() if result.drifted] == [feature]
    assert judged[feature].test == "chi2"
    assert judged[feature].recent[value] > judged[feature].training[value]


def test_a_category_never_seen_in_training_counts_without_breaking_the_test(
    clean_penguins: pd.DataFrame,
) -> None:
    recent = shifted(clean_penguins, 200, 6)
    recent.loc[recent.index[:80], "island"] = "Anvers"
    result = judge(clean_penguins, recent)["island"]
    assert result.drifted
    assert result.training["Anvers"] == 0.0
    assert result.recent["Anvers"] == pytest.approx(0.4)
    assert np.isfinite(result.statistic) and np.isfinite(result.psi)


@pytest.mark.parametrize("species", ["Gentoo", "Chinstrap"])
def test_predicted_species_shift_is_flagged(clean_penguins: pd.DataFrame, species: str) -> None:
    recent = shifted(clean_penguins, 150, 8)
    recent.loc[recent.index[:100], "species"] = species
    judged = judge(clean_penguins, recent)
    assert judged["species"].drifted
    assert judged["species"].recent[species] > 0.6


def test_one_category_on_both_sides_is_not_drift() -> None:
    one = pd.Series(["male"] * 50)
    result = drift.categorical_drift(one, one.head(20), THRESHOLDS)
    assert (result.p_value, result.psi, result.drifted) == (1.0, 0.0, False)


def test_psi_is_zero_for_equal_shares_and_grows_with_the_move() -> None:
    even = np.full(10, 0.1)
    assert drift.psi(even, even) == 0.0
    small, large = np.array([0.12, *[0.0977] * 9]), np.array([0.5, *[0.5 / 9] * 9])
    assert 0 < drift.psi(even, small) < drift.psi(even, large)


def test_decile_edges_survive_repeated_values() -> None:
    edges = drift.decile_edges(np.array([1.0] * 90 + [2.0] * 10))
    assert edges[0] == -np.inf and edges[-1] == np.inf
    assert list(edges[1:-1]) == sorted(set(edges[1:-1]))
