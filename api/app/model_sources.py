"""Where the served version is chosen (`MODEL_REGISTRY`): `current.json` in ARTIFACTS_DIR, or the MLflow
registry's `champion` alias. Both answer the one question the model store asks (which version is promoted,
and its files), so the checks, the swap and the metrics are written once, in `app.model_store`."""

from pathlib import Path
from typing import Protocol

from app.core.config import Settings
from app.loader import FolderVersion, VersionFiles, read_current
from penguins_contract import CURRENT_FILE


class ModelSource(Protocol):
    @property
    def pointer(self) -> str:
        """What names the promoted version here, for the message while nothing is promoted."""

    def promoted(self) -> VersionFiles | None:
        """The promoted version (its files are read only when it is loaded), or None before the first
        promotion; LoadError when the pointer is unreadable or names something unusable."""


class FolderSource:
    """`current.json` in the shared folder the pipeline writes versions to (MODEL_REGISTRY=folder)."""

    def __init__(self, artifacts_dir: Path) -> None:
        self.artifacts_dir = artifacts_dir
        self.pointer = str(artifacts_dir / CURRENT_FILE)

    def promoted(self) -> FolderVersion | None:
        version = read_current(self.artifacts_dir)
        return None if version is None else FolderVersion(self.artifacts_dir, version)


def model_source(settings: Settings) -> ModelSource:
    if settings.model_registry == "mlflow":
        # Imported only here: the folder mode (the default) loads no HTTP client at all.
        from app.mlflow_registry import MlflowSource

        return MlflowSource(settings.mlflow_tracking_uri)
    return FolderSource(settings.artifacts_dir)
