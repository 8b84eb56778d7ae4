"""Both sides use the contract's very definitions, each with its own exception: no copy is left to drift."""

from pathlib import Path

import pytest

import penguins_contract as contract
from app import loader, schemas
from penguins_contract import ContractError
from penguins_pipeline.core import schema
from penguins_pipeline.training import artifacts


def test_both_sides_use_the_contracts_very_objects() -> None:
    assert schema.PHYSICAL_BOUNDS is schemas.PHYSICAL_BOUNDS is contract.PHYSICAL_BOUNDS
    assert schema.VERSION_ID_PATTERN is contract.VERSION_ID_PATTERN
    assert list(contract.NUMERIC_FEATURES) == schema.NUMERIC_FEATURES
    assert loader.SERVING_FILE is contract.SERVING_FILE
    assert loader.SERVING_ARRAYS is contract.SERVING_ARRAYS


def test_each_side_raises_its_own_error_with_the_contracts_message(tmp_path: Path) -> None:
    (tmp_path / "current.json").write_text('{"version": "../../etc"}')
    with pytest.raises(artifacts.ArtifactError, match="not a version id") as pipeline:
        artifacts.read_current(tmp_path)
    assert isinstance(pipeline.value.__cause__, ContractError)
    with pytest.raises(loader.LoadError, match="not a version id") as api:
        loader.read_current(tmp_path)
    assert api.value.reason == "current_json"
