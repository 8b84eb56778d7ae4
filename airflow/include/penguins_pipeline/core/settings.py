"""The pipeline's one settings object, read from the environment (see `.env.example`)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# airflow/include/penguins_pipeline/core/settings.py -> the repository root. Defaults are absolute because
# Airflow task processes may run in another working directory.
REPO_ROOT = Path(__file__).resolve().parents[4]
LOCAL_DIR = REPO_ROOT / ".local"


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    penguins_db_url: str = f"sqlite:///{LOCAL_DIR / 'penguins.db'}"
    penguins_source: str = "palmerpenguins"
    artifacts_dir: Path = REPO_ROOT / "artifacts"
    api_url: str = "http://localhost:8000"
    warmup_token: SecretStr | None = None

    # --- loading (data_pipeline) and every task ---
    # Rows per chunk read from a CSV source or from penguins_raw: bounds the memory of a load of any size.
    chunk_rows: int = Field(50_000, ge=1)
    task_retries: int = Field(2, ge=0)
    retry_delay_seconds: float = Field(10.0, ge=0)

    # --- training (train_pipeline) ---
    test_fraction: float = Field(0.2, gt=0, lt=1)
    random_state: int = 42
    n_estimators: int = Field(100, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(1, ge=1)
    # Each tree sees at most this many bootstrap rows: small data is unaffected, and on millions of rows the
    # trees (and the model file the API loads) stay bounded instead of growing with the data.
    max_samples_per_tree: int = Field(20_000, ge=1)
    train_n_jobs: int = -1
    cv_folds: int = Field(5, ge=2)
    min_accuracy: float = Field(0.95, ge=0, le=1)
    gate_tolerance: float = Field(0.02, ge=0, le=1)
    keep_versions: int = Field(5, ge=1)
    # The newest LIVE_TEST_FRACTION of penguins_labelled (by labelled_at) is never trained on: it is the live
    # test set the challenger and the champion are both scored on.
    live_test_fraction: float = Field(0.3, gt=0, lt=1)
    # Live labelled rows needed before live accuracy counts: with fewer live test rows the held-out gate
    # alone decides a promotion (monitoring uses it too, for its live-accuracy alert).
    min_live_labelled: int = Field(30, ge=1)
    viz_sample_max: int = Field(3000, ge=10)
    warmup_attempts: int = Field(5, ge=1)
    warmup_backoff_seconds: float = Field(1.0, ge=0)
    warmup_timeout_seconds: float = Field(5.0, gt=0)

    # --- tracking and registry (MLflow; train_pipeline, make sweep, make rollback) ---
    # The tracking server every training run is recorded in; empty: no tracking, the folder alone.
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    # How long one call to the server may take before the task fails (and Airflow retries it).
    mlflow_timeout_seconds: float = Field(30.0, gt=0)

    # --- monitoring (monitor_pipeline) ---
    # The API's prediction log (JSON Lines, one file per API worker); read-only is enough (see retention).
    predictions_dir: Path = LOCAL_DIR / "predictions"
    # Rows of penguins_predictions older than this are deleted, and so are fully loaded log files when
    # PREDICTIONS_DIR is writable; 0 keeps everything forever.
    predictions_retention_days: float = Field(30, ge=0)
    drift_window_hours: float = Field(168, gt=0)
    drift_min_records: int = Field(50, ge=2)
    # A feature drifted when its test's p-value is below DRIFT_P_VALUE and its PSI is at least DRIFT_PSI.
    drift_p_value: float = Field(0.01, gt=0, lt=1)
    drift_psi: float = Field(0.2, ge=0)
    drift_keep_reports: int = Field(24, ge=1)
    # The statistics are computed on at most this many of the window's predictions, a uniform sample seeded
    # with RANDOM_STATE: the memory of a run stays bounded however many predictions the window holds.
    drift_sample_rows: int = Field(100_000, ge=100)
    # Live accuracy (the true species sent to POST /feedback): below MIN_LIVE_ACCURACY over the window, with
    # at least MIN_LIVE_LABELLED labelled predictions in it (see above), emits penguins_drift like drift.
    min_live_accuracy: float = Field(0.9, ge=0, le=1)

    @field_validator("max_depth", mode="before")
    @classmethod
    def _empty_depth_is_none(cls, depth: object) -> object:
        """`MAX_DEPTH=` (empty: what compose passes when .env does not set it) means no limit."""
        return None if depth == "" else depth


@lru_cache
def get_settings() -> PipelineSettings:
    return PipelineSettings()
