"""The model registry's names (MLflow), shared by the pipeline that records and registers every version and
the API that can follow the `champion` alias (`MODEL_REGISTRY=mlflow`) over MLflow's REST API.

A registered version of `REGISTERED_MODEL` carries two tags: `TAG_VERSION` (the artifact version id, as under
`models/`) and `TAG_SERVING_SHA256` (the sha256 of its `serving.npz`). Its run holds the version's
`manifest.json` and `serving.npz` under the artifact folder `RUN_SERVING_DIR`, which is all the API reads.
"""

EXPERIMENT = "penguins"
REGISTERED_MODEL = "penguins"
CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_VERSION = "penguins_version"
TAG_SERVING_SHA256 = "serving_sha256"
RUN_SERVING_DIR = "serving"
# The fitted scikit-learn pipeline logged as an MLflow model (`log_model(name=...)`).
RUN_MODEL_NAME = "model"
