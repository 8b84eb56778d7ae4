"""The API's one settings object, read from the environment (documented in `.env.example`)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# api/app/core/config.py -> the repository root (the native default of ARTIFACTS_DIR is <repo>/artifacts).
REPO_ROOT = Path(__file__).resolve().parents[3]
MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    artifacts_dir: Path = REPO_ROOT / "artifacts"
    warmup_token: SecretStr | None = None
    # Loopback, like the native Airflow: a /warmup without WARMUP_TOKEN must not face the network by default.
    # Compose sets 0.0.0.0 inside the API container, where the port mapping decides who reaches it.
    api_host: str = "127.0.0.1"
    # Compose's BIND_ADDRESS: the host address its port is published on (natively unset: API_HOST is).
    bind_address: str | None = None
    api_port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(1, ge=1)
    api_log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    api_access_log: bool = True
    # Where the served version is chosen: `folder` (current.json in ARTIFACTS_DIR) or `mlflow` (the registry's
    # champion alias at MLFLOW_TRACKING_URI, over its REST API; the files through its artifact proxy).
    model_registry: Literal["folder", "mlflow"] = "folder"
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    # Every worker asks its model source this often, so all of them converge without a /warmup call.
    api_model_poll_seconds: float = Field(2.0, gt=0)
    api_max_body_bytes: int = Field(1 * MIB, gt=0)
    # A full batch is over a MiB of JSON (its size is in INFORME_IMPLEMENTACION.md), so the batch routes get
    # their own, larger limit.
    api_max_batch_body_bytes: int = Field(4 * MIB, gt=0)
    # A refused body up to this size is read (and discarded) before the 413, so every client can read the 413;
    # a larger one is cut off mid-upload.
    api_max_drain_bytes: int = Field(16 * MIB, gt=0)
    api_max_batch_size: int = Field(10_000, ge=1)
    # Top two probabilities closer than this: the answer carries a near-tie warning.
    api_near_tie_margin: float = Field(0.2, ge=0, le=1)
    # Every answered penguin is appended here (app/prediction_log.py), one file per worker process.
    predictions_dir: Path = REPO_ROOT / ".local" / "predictions"
    predictions_log: bool = True
    predictions_rotate_bytes: int = Field(64 * MIB, gt=0)
    predictions_rotate_seconds: float = Field(3600.0, gt=0)

    @field_validator("artifacts_dir", "predictions_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        """Resolved once, so a later chdir (or a worker started elsewhere) reads the same folder."""
        return path.expanduser().resolve()

    @field_validator("warmup_token")
    @classmethod
    def _empty_token_is_none(cls, token: SecretStr | None) -> SecretStr | None:
        """`WARMUP_TOKEN=` (empty, as in .env.example) means no token, not a token of zero characters."""
        return token if token is not None and token.get_secret_value() else None

    @model_validator(mode="after")
    def _registry_is_reachable_over_http(self) -> "Settings":
        """The API reads the registry over plain HTTP: a missing or other kind of URI fails at start, not at
        the first poll."""
        if self.model_registry == "mlflow" and not self.mlflow_tracking_uri.startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                "MODEL_REGISTRY=mlflow needs MLFLOW_TRACKING_URI to be the tracking server's http(s) "
                f"address, not {self.mlflow_tracking_uri!r}"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
