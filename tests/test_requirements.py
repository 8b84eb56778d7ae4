"""The pins are the contract between the two images and the native venv: one lock, the same ML libraries."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT_FILES = [
    "airflow/requirements.txt",
    "api/requirements.txt",
    "mlflow-server/requirements.txt",
    "s3/requirements.txt",
    "requirements-dev.txt",
]
# The pipeline writes the serving export with numpy, the API reads it with numpy: the same version on both
# sides. Nothing pickled crosses over (the API installs no scikit-learn, pandas or joblib).
SHARED_ML_LIBRARIES = ["numpy"]
SERVING_LEAVES_OUT = ["scikit-learn", "pandas", "joblib", "scipy"]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]+\])?==(\S+)$")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-r"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: '{line}' is not pinned with =="
        pins[match.group(1).lower()] = match.group(3)
    return pins


@pytest.mark.parametrize("name", REQUIREMENT_FILES)
def test_every_requirement_is_pinned_to_the_lock(name: str) -> None:
    lock = _pins(ROOT / "requirements.lock")
    for package, version in _pins(ROOT / name).items():
        locked = lock.get(package)
        assert locked == version, f"{name} pins {package}=={version}, the lock has {locked}"


def test_both_sides_pin_the_same_ml_libraries() -> None:
    airflow_side = _pins(ROOT / "airflow/requirements.txt")
    api_side = _pins(ROOT / "api/requirements.txt")
    for package in SHARED_ML_LIBRARIES:
        assert package in airflow_side and package in api_side, f"{package} must be pinned on both sides"
        assert airflow_side[package] == api_side[package], package


def test_the_api_image_installs_no_training_library() -> None:
    api_side = _pins(ROOT / "api/requirements.txt")
    assert [package for package in SERVING_LEAVES_OUT if package in api_side] == []


def test_the_lock_is_airflow_3_3() -> None:
    assert _pins(ROOT / "requirements.lock")["apache-airflow"].startswith("3.3.")
