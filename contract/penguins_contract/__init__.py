"""The artifact contract between the training pipeline and the API, written once.

Pure standard library, so both sides (and both images) can install it without pulling the other's
dependencies: the API never imports Airflow or training code, the pipeline never imports FastAPI.
"""

from penguins_contract import registry
from penguins_contract.checksums import (
    check_bytes,
    file_entry,
    listed_files,
    sha256_bytes,
    sha256_file,
    verify_folder,
)
from penguins_contract.current import read_current
from penguins_contract.errors import ContractError, translated
from penguins_contract.features import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, PHYSICAL_BOUNDS
from penguins_contract.feedback import (
    FEEDBACK_FIELDS,
    FEEDBACK_FILE_PREFIX,
    FEEDBACK_KEY,
    LOG_FILE_PATTERN,
    PREDICTIONS_FILE_PREFIX,
    FeedbackRecord,
)
from penguins_contract.layout import (
    CURRENT_FILE,
    MANIFEST_FILE,
    MODEL_FILES,
    MODELS_DIR,
    SERVING_FILE,
    SPLIT_FILE,
    VERSION_FILES,
    VERSION_ID_PATTERN,
    VERSION_PATTERN,
    VIZ_FILE,
    check_version_id,
    version_dir,
)
from penguins_contract.manifest import SCHEMA_VERSION, check_manifest, parse_manifest, read_manifest
from penguins_contract.predictions import (
    PREDICTION_ENDPOINTS,
    PREDICTION_FIELDS,
    PREDICTION_ID_PATTERN,
    PREDICTION_KEY,
    PredictionEndpoint,
    PredictionRecord,
)
from penguins_contract.reports import (
    LATEST_REPORT_FILE,
    REPORT_HTML,
    REPORT_ID_PATTERN,
    REPORT_JSON,
    REPORTS_DIR,
    latest_report,
    report_id,
    report_run,
)
from penguins_contract.serving import PCA_TOLERANCE, SERVING_ARRAYS, categories_key

__all__ = [
    "CATEGORICAL_FEATURES",
    "CURRENT_FILE",
    "FEATURES",
    "FEEDBACK_FIELDS",
    "FEEDBACK_FILE_PREFIX",
    "FEEDBACK_KEY",
    "LATEST_REPORT_FILE",
    "LOG_FILE_PATTERN",
    "MANIFEST_FILE",
    "MODELS_DIR",
    "MODEL_FILES",
    "NUMERIC_FEATURES",
    "PCA_TOLERANCE",
    "PHYSICAL_BOUNDS",
    "PREDICTIONS_FILE_PREFIX",
    "PREDICTION_ENDPOINTS",
    "PREDICTION_FIELDS",
    "PREDICTION_ID_PATTERN",
    "PREDICTION_KEY",
    "REPORTS_DIR",
    "REPORT_HTML",
    "REPORT_ID_PATTERN",
    "REPORT_JSON",
    "SCHEMA_VERSION",
    "SERVING_ARRAYS",
    "SERVING_FILE",
    "SPLIT_FILE",
    "VERSION_FILES",
    "VERSION_ID_PATTERN",
    "VERSION_PATTERN",
    "VIZ_FILE",
    "ContractError",
    "FeedbackRecord",
    "PredictionEndpoint",
    "PredictionRecord",
    "categories_key",
    "check_bytes",
    "check_manifest",
    "check_version_id",
    "file_entry",
    "latest_report",
    "listed_files",
    "parse_manifest",
    "read_current",
    "read_manifest",
    "registry",
    "report_id",
    "report_run",
    "sha256_bytes",
    "sha256_file",
    "translated",
    "verify_folder",
    "version_dir",
]
