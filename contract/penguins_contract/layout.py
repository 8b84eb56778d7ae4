"""Where things live under ARTIFACTS_DIR, and the version ids allowed to name them.

`current.json` names the served version; `models/<version>/` holds the joblib files, the serving export and
`manifest.json`.
Names starting with a dot (staging folders, temporary files) are never versions.
"""

import re
from pathlib import Path

from penguins_contract.errors import ContractError

CURRENT_FILE = "current.json"
MODELS_DIR = "models"
MANIFEST_FILE = "manifest.json"
# The fitted objects, by role: the original's four model files.
MODEL_FILES: dict[str, str] = {
    "preprocessor": "preprocessor.joblib",
    "model": "model.joblib",
    "label_encoder": "label_encoder.joblib",
    "pca": "pca.joblib",
}
VIZ_FILE = "training_data_for_viz.joblib"
# The whole training split (the API's neighbours).
SPLIT_FILE = "training_split.joblib"
# Everything the API needs, as plain arrays (`np.load(allow_pickle=False)`): the API reads only this file,
# so it never unpickles and never imports scikit-learn. Its arrays are named in `serving.py`.
SERVING_FILE = "serving.npz"
# Every file a version must have, each with a sha256 in the manifest.
VERSION_FILES: tuple[str, ...] = (*MODEL_FILES.values(), VIZ_FILE, SPLIT_FILE, SERVING_FILE)

# UTC time to the microsecond (lexical order = chronological) and 8 hex of the data+params hash, e.g.
# 20261127T123456123456Z-1a2b3c4d. Only such ids are ever joined to a path: no "..", no separators. The
# string is also a JSON-schema pattern (the DAG's `version` param); in Python match it with `fullmatch`,
# since `$` alone would let a trailing newline through.
VERSION_ID_PATTERN = r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}$"
VERSION_PATTERN = re.compile(VERSION_ID_PATTERN)


def check_version_id(version: object) -> str:
    """The id itself, or ContractError (reason "invalid") for anything else, whatever its type."""
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise ContractError(
            f"{version!r} is not a version id (expected e.g. 20261127T123456123456Z-1a2b3c4d)", "invalid"
        )
    return version


def version_dir(artifacts_dir: Path, version: str) -> Path:
    """The folder of a version, only after its id was checked (no path can sneak in)."""
    return Path(artifacts_dir) / MODELS_DIR / check_version_id(version)
