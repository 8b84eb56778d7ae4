"""The API's one settings object, read from the environment (documented in `.env.example`)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
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
    api_port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(1, ge=1)
    api_log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    api_access_log: bool = True
    # Every worker re-reads current.json this often, so all of them converge without a /warmup call.
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


@lru_cache
def get_settings() -> Settings:
    return Settings()
