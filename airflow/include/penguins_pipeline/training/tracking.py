"""The record of every training run in MLflow, and the registry's aliases that follow promotion.

A version is recorded from its folder (staged or published) alone: the manifest holds the params, metrics,
data fingerprint and row counts; the folder's fitted objects make the scikit-learn pipeline that is logged as
an MLflow model; `manifest.json` and `serving.npz` go under `serving/`, which is all the API reads
(`MODEL_REGISTRY=mlflow`). Everything is keyed by the version id (tag `penguins_version`), so each function is
idempotent: a rerun after any failure finds what was done and does only what is missing. A registered version
is created in one call with both its tags, and only from a run that finished: nothing is half-registered.

MLflow is imported inside the functions: it costs about a second, and DAG files are parsed every 30 s.
"""

import logging
import os
import warnings
from collections.abc import Mapping
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

import penguins_contract as contract
from penguins_contract import registry
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CONFUSION_MATRIX_FILE = "confusion_matrix.png"
# Run tags of challenger against champion: "promoted" or "rejected" (held-out gate or live rows), and why.
DECISION_TAG = "decision"
DECISION_REASON_TAG = "decision_reason"
INPUT_EXAMPLE_ROWS = 5
# skops (MLflow's default format for scikit-learn) refuses to load any type it does not trust; the forest's
# trees are the one type of this pipeline missing from its defaults.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
# Named, not inferred: MLflow's inference re-imports the model in a subprocess (up to 120 s on a busy host).
MODEL_REQUIREMENTS = ("scikit-learn", "skops", "numpy", "pandas")
# MLflow's client retries a failed call 7 times with doubling waits (minutes); the task retries instead.
CLIENT_RETRIES = "2"


class TrackingUnavailableError(RuntimeError):
    """The tracking server does not answer: retryable (the task fails, Airflow retries, nothing is lost)."""


class TaskInstanceLike(Protocol):
    dag_id: str
    run_id: str
    try_number: int


def enabled(settings: PipelineSettings) -> bool:
    return bool(settings.mlflow_tracking_uri)


def airflow_tags(ti: TaskInstanceLike) -> dict[str, str]:
    """The Airflow run that recorded a version, as run tags."""
    return {
        "airflow_dag_id": ti.dag_id,
        "airflow_run_id": ti.run_id,
        "airflow_try_number": str(ti.try_number),
    }


def unavailable(settings: PipelineSettings, problem: object) -> TrackingUnavailableError:
    return TrackingUnavailableError(
        f"the MLflow tracking server at MLFLOW_TRACKING_URI={settings.mlflow_tracking_uri} does not "
        f"answer ({problem}). Start it (natively make run, make pipeline and make sweep start the embedded "
        "one) or set MLFLOW_TRACKING_URI= (empty) to train without tracking. Nothing was registered or "
        "moved: the task is retried, and a rerun records and registers whatever is missing."
    )


def connect(settings: PipelineSettings) -> "MlflowClient":
    """A client of a server that answered its health check just now: a server that is down fails the task in
    seconds with what to do, rather than after the client's own retries."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith(("http://", "https://")):
        try:
            health = httpx.get(f"{uri.rstrip('/')}/health", timeout=settings.mlflow_timeout_seconds)
        except httpx.TransportError as err:
            raise unavailable(settings, f"{type(err).__name__}: {err}") from err
        if health.status_code != 200:
            raise unavailable(settings, f"GET /health answered {health.status_code}")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = CLIENT_RETRIES
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(settings.mlflow_timeout_seconds))
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def experiment_id() -> str:
    import mlflow

    return str(mlflow.set_experiment(registry.EXPERIMENT).experiment_id)


def finished_run(client: "MlflowClient", version: str) -> "Run | None":
    """The completed run that recorded `version`, if any."""
    runs = client.search_runs(
        [experiment_id()],
        f"tags.{registry.TAG_VERSION} = '{artifacts.check_version_id(version)}' "
        "and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0] if runs else None


def registered_version(client: "MlflowClient", version: str) -> "ModelVersion | None":
    """The registered version of `penguins` that holds `version`, if any."""
    found = client.search_model_versions(
        f"name = '{registry.REGISTERED_MODEL}' and "
        f"tags.{registry.TAG_VERSION} = '{artifacts.check_version_id(version)}'"
    )
    return found[0] if found else None


def params(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Every model setting, the split and CV settings, the data fingerprint and row counts."""
    run = manifest["params"]
    data = manifest["data"]
    return {
        **run["model"],
        "test_fraction": run["test_fraction"],
        "random_state_split": run["random_state"],
        "cv_folds": run["cv_folds"],
        "data_fingerprint": data["fingerprint"],
        "data_source_table": data["source_table"],
        "rows_total": data["rows_total"],
        "rows_train": data["rows_train"],
        "rows_test": data["rows_test"],
        # Provenance (versions trained before live labels have none).
        **{f"rows_{table}": rows for table, rows in data.get("sources", {}).items()},
        **({"rows_live_test": data["rows_live_test"]} if "rows_live_test" in data else {}),
    }


def decision_metrics(decision: Mapping[str, Any]) -> dict[str, float]:
    """Both scores of challenger against champion, on the held-out rows and on the live test rows (a score
    that does not exist, e.g. no champion, is left out)."""
    found = {
        f"{who}_{where}_accuracy": decision[where][role]
        for where in ("heldout", "live")
        for who, role in (("challenger", "candidate"), ("champion", "champion"))
    }
    found["live_test_rows"] = decision["live"]["rows"]
    return {key: float(value) for key, value in found.items() if value is not None}


def metrics(manifest_metrics: Mapping[str, Any]) -> dict[str, float]:
    """Held-out accuracy, macro-F1 and per-class scores; the cross-validation's mean and spread."""
    found = {"accuracy": manifest_metrics["accuracy"], "f1_macro": manifest_metrics["f1_macro"]}
    for name, scores in manifest_metrics["per_class"].items():
        found.update({f"{score}_{name}": scores[score] for score in ("precision", "recall", "f1")})
    cv = manifest_metrics["cv"]
    found.update({f"cv_{key}": value for key, value in cv.items() if key.endswith(("_mean", "_std"))})
    return {key: float(value) for key, value in found.items()}


def confusion_figure(confusion: Mapping[str, Any]) -> Any:
    """The held-out confusion matrix as a matplotlib figure (headless backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay(np.array(confusion["matrix"]), display_labels=confusion["labels"])
    display.plot(colorbar=False)
    display.ax_.set_title("held-out confusion matrix")
    return display.figure_


def log_sklearn_model(folder: Path) -> str:
    """The version's preprocessing and forest as one scikit-learn pipeline whose pyfunc answers class
    probabilities (columns in the manifest's `classes` order); returns its model URI."""
    import joblib
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.pipeline import Pipeline

    model = artifacts.load_model(folder)
    pipeline = Pipeline([("preprocessor", model.preprocessor), ("model", model.model)])
    example = joblib.load(folder / contract.SPLIT_FILE)["features_raw"].head(INPUT_EXAMPLE_ROWS)
    example = example.astype({name: object for name in example.select_dtypes(exclude="number").columns})
    # The skops serializer, imported here, looks every numpy and scipy function up in each loaded module,
    # and in a task Airflow's deprecated modules warn at each lookup: 1,160 warnings, seconds of the task.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The `airflow\.", category=FutureWarning)
        import skops.io  # noqa: F401

    info = mlflow.sklearn.log_model(
        pipeline,
        name=registry.RUN_MODEL_NAME,
        signature=infer_signature(example, pipeline.predict_proba(example)),
        input_example=example,
        pyfunc_predict_fn="predict_proba",
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        pip_requirements=[f"{name}=={package_version(name)}" for name in MODEL_REQUIREMENTS],
    )
    return str(info.model_uri)


def record_run(
    settings: PipelineSettings,
    folder: Path,
    tags: Mapping[str, str] | None = None,
    decision: Mapping[str, Any] | None = None,
    nested: bool = False,
) -> str:
    """Record the version in `folder` as a finished run of experiment `penguins` (once); returns its id.
    `decision` (challenger against champion, `evaluate.challenge`) adds both scores and tag `decision`."""
    import mlflow

    folder = Path(folder)
    manifest = artifacts.read_manifest(folder)
    version = manifest["version"]
    client = connect(settings)
    done = finished_run(client, version)
    if done is not None:
        log.info("Version %s is recorded already: run %s", version, done.info.run_id)
        return str(done.info.run_id)
    # Runs of a try that died half-way (never FINISHED) are marked failed, so only whole runs count.
    for stale in client.search_runs(
        [experiment_id()],
        f"tags.{registry.TAG_VERSION} = '{version}' and attributes.status != 'FINISHED'",
    ):
        if stale.info.status == "RUNNING":
            client.set_terminated(stale.info.run_id, "FAILED")
    run_tags = {registry.TAG_VERSION: version, **(tags or {})}
    if decision is not None:
        run_tags[DECISION_TAG] = "promoted" if decision["promoted"] else "rejected"
        run_tags[DECISION_REASON_TAG] = decision["reason"]
    with mlflow.start_run(run_name=version, tags=run_tags, nested=nested) as run:
        mlflow.log_params(params(manifest))
        mlflow.log_metrics(
            {**metrics(manifest["metrics"]), **(decision_metrics(decision) if decision else {})}
        )
        figure = confusion_figure(manifest["metrics"]["confusion_matrix"])
        mlflow.log_figure(figure, CONFUSION_MATRIX_FILE)
        figure.clf()
        for name in (contract.MANIFEST_FILE, contract.SERVING_FILE):
            mlflow.log_artifact(str(folder / name), registry.RUN_SERVING_DIR)
        log_sklearn_model(folder)
    log.info("Recorded version %s as run %s of experiment %s", version, run.info.run_id, registry.EXPERIMENT)
    return str(run.info.run_id)


def register(settings: PipelineSettings, folder: Path, tags: Mapping[str, str] | None = None) -> str:
    """The registered version of `penguins` for the version in `folder`, recording and registering whatever
    is missing; returns its registry version number."""
    import mlflow

    manifest = artifacts.read_manifest(Path(folder))
    client = connect(settings)
    existing = registered_version(client, manifest["version"])
    if existing is not None:
        return str(existing.version)
    run = client.get_run(record_run(settings, folder, tags))
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    if not outputs:
        raise TrackingUnavailableError(f"the run of version {manifest['version']} finished without its model")
    created = mlflow.register_model(
        f"models:/{outputs[0].model_id}",
        registry.REGISTERED_MODEL,
        tags={
            registry.TAG_VERSION: manifest["version"],
            registry.TAG_SERVING_SHA256: manifest["files"][contract.SERVING_FILE]["sha256"],
        },
    )
    log.info("Registered %s as %s %s", manifest["version"], registry.REGISTERED_MODEL, created.version)
    return str(created.version)


def set_alias(
    settings: PipelineSettings, alias: str, folder: Path, tags: Mapping[str, str] | None = None
) -> str:
    """Point `alias` at the registered version of the version in `folder` (registered first if it is not);
    returns the registry version number."""
    number = register(settings, folder, tags)
    connect(settings).set_registered_model_alias(registry.REGISTERED_MODEL, alias, number)
    log.info("Alias %s of %s -> %s (%s)", alias, registry.REGISTERED_MODEL, number, Path(folder).name)
    return number
