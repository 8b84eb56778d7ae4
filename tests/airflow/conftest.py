"""Fixtures for the training tests: the real penguins as the clean table has them, and quick settings."""

from pathlib import Path

import palmerpenguins
import pandas as pd
import pytest

from penguins_pipeline.schema import DATA_COLUMNS
from penguins_pipeline.settings import PipelineSettings


@pytest.fixture(scope="session")
def penguins() -> pd.DataFrame:
    """The `penguins_clean` content: palmerpenguins without the rows that miss a value."""
    return palmerpenguins.load_penguins().dropna()[DATA_COLUMNS].reset_index(drop=True)


@pytest.fixture
def quick_settings(tmp_path: Path) -> PipelineSettings:
    """Default parameters with fewer trees and folds: the same code paths in a fraction of the time."""
    return PipelineSettings(artifacts_dir=tmp_path / "artifacts", n_estimators=20, cv_folds=3, api_url="")
