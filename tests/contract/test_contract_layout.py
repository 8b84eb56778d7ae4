"""The layout, version ids, features and bounds of the artifact contract."""

from pathlib import Path

import pytest

import penguins_contract as contract
from penguins_contract import ContractError


def test_the_layout_names_the_files_of_the_design() -> None:
    assert (contract.CURRENT_FILE, contract.MODELS_DIR, contract.MANIFEST_FILE) == (
        "current.json",
        "models",
        "manifest.json",
    )
    assert set(contract.VERSION_FILES) == {
        "preprocessor.joblib",
        "model.joblib",
        "label_encoder.joblib",
        "pca.joblib",
        "training_data_for_viz.joblib",
        "training_split.joblib",
        "serving.npz",
    }
    assert contract.SCHEMA_VERSION == 1


@pytest.mark.parametrize("version", ["20261127T123456123456Z-1a2b3c4d", "20000101T000000000000Z-00000000"])
def test_a_version_id_is_accepted_and_joined_to_models(tmp_path: Path, version: str) -> None:
    assert contract.check_version_id(version) == version
    assert contract.version_dir(tmp_path, version) == tmp_path / "models" / version


@pytest.mark.parametrize(
    "version",
    [
        "../../etc",
        "/etc/passwd",
        "20261127T123456123456Z-1a2b3c4d/..",
        "20261127T123456123456Z-1A2B3C4D",
        "20261127T123456Z-1a2b3c4d",
        "20261127T123456123456Z-1a2b3c4d\n",
        "",
        None,
        ["20261127T123456123456Z-1a2b3c4d"],
    ],
)
def test_anything_else_is_refused_before_it_becomes_a_path(tmp_path: Path, version: object) -> None:
    with pytest.raises(ContractError, match="is not a version id") as refused:
        contract.check_version_id(version)
    assert refused.value.reason == "invalid"
    with pytest.raises(ContractError):
        contract.version_dir(tmp_path, version)  # type: ignore[arg-type]


def test_features_and_bounds_agree_and_cannot_be_changed_by_one_side() -> None:
    assert (*contract.NUMERIC_FEATURES, *contract.CATEGORICAL_FEATURES) == contract.FEATURES
    assert set(contract.PHYSICAL_BOUNDS) == set(contract.NUMERIC_FEATURES)
    assert all(low < high for low, high in contract.PHYSICAL_BOUNDS.values())
    with pytest.raises(TypeError):
        contract.PHYSICAL_BOUNDS["body_mass_g"] = (0.0, 1e9)  # type: ignore[index]


class SideError(Exception):
    pass


def test_translated_turns_a_contract_error_into_the_sides_own() -> None:
    def side(err: ContractError) -> Exception:
        return SideError(str(err))

    with pytest.raises(SideError, match=r"^bad$") as raised, contract.translated(side):
        raise ContractError("bad", "checksum")
    assert isinstance(raised.value.__cause__, ContractError)
    original = ContractError("kept")
    with pytest.raises(ContractError) as kept, contract.translated(lambda err: err):
        raise original
    assert kept.value is original
    with pytest.raises(KeyError), contract.translated(side):
        raise KeyError("not the contract's")
