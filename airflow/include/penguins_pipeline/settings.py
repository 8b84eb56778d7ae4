"""The pipeline's one settings object, read from the environment (see `.env.example`)."""

from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# airflow/include/penguins_pipeline/settings.py -> the repository root. Defaults are absolute because Airflow
# task processes may run in another working directory.
REPO_ROOT = Path(__file__).resolve().parents[3]
LOCAL_DIR = REPO_ROOT / ".local"


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    penguins_db_url: str = f"sqlite:///{LOCAL_DIR / 'penguins.db'}"
    penguins_source: str = "palmerpenguins"
    artifacts_dir: Path = REPO_ROOT / "artifacts"
    api_url: str = "http://localhost:8000"
    warmup_token: SecretStr | None = None


@lru_cache
def get_settings() -> PipelineSettings:
    return PipelineSettings()
