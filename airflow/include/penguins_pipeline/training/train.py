"""Training one model version: a seeded stratified split, preprocessing and forest fit on the TRAIN rows only,
held-out evaluation, and the staged version folder with its manifest.

`stage_training` is the DAG's `train` step; `train_and_write` is the same plus verify and publish, for callers
(tests, benchmarks) that want a ready version in one call.
"""

import hashlib
import json
import math
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

import penguins_contract as contract
from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.schema import (
    CATEGORICAL_FEATURES,
    CLEAN_TABLE,
    DATA_COLUMNS,
    FEATURES,
    LABELLED_AT,
    LABELLED_TABLE,
    NUMERIC_FEATURES,
    TARGET,
)
from penguins_pipeline.core.settings import PipelineSettings, get_settings
from penguins_pipeline.core.store import LABELLED_READ
from penguins_pipeline.training import artifacts, export
from penguins_pipeline.training.evaluate import accuracy, cross_validation, held_out_metrics, score_current
from penguins_pipeline.training.model import TrainedModel

# Cross-validation refits the model CV_FOLDS times: past this many training rows it runs on a stratified
# sample, which estimates the spread as well at a fraction of the cost (held-out metrics use every row).
CV_MAX_ROWS = 100_000


class TrainingDataError(PermanentError, ValueError):
    """The clean table cannot train a classifier (too few rows or species, missing columns or values)."""


@dataclass(frozen=True)
class StagedTraining:
    """What the `train` step hands on: small values only (the model itself is on disk in `staging_dir`)."""

    version: str
    staging_dir: str
    metrics: dict[str, Any]
    current: dict[str, Any] | None


def prepare(clean: pd.DataFrame) -> pd.DataFrame:
    """The data columns in a canonical row order: the fingerprint and the split ignore how rows were read."""
    missing = [c for c in DATA_COLUMNS if c not in clean.columns]
    if missing:
        raise TrainingDataError(f"{CLEAN_TABLE} lacks columns {missing}; run data_pipeline first")
    # Plain `str` column names: a reader may hand over str subclasses (SQLAlchemy's quoted_name), which
    # scikit-learn does not record as feature names and which would pickle a SQLAlchemy dependency into files.
    data = clean[DATA_COLUMNS].set_axis(list(DATA_COLUMNS), axis=1)
    holes = data.columns[data.isna().any()].tolist()
    if holes:
        raise TrainingDataError(f"{CLEAN_TABLE} has missing values in {holes}; run data_pipeline first")
    return data.sort_values(DATA_COLUMNS).reset_index(drop=True)


def data_fingerprint(data: pd.DataFrame) -> str:
    row_hashes = pd.util.hash_pandas_object(data[DATA_COLUMNS], index=False).to_numpy()
    return "sha256:" + hashlib.sha256(row_hashes.tobytes()).hexdigest()


def split(
    data: pd.DataFrame, test_fraction: float, random_state: int, cv_folds: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified, seeded train/held-out split, refusing data too thin to train, test and cross-validate."""
    counts = data[TARGET].value_counts().sort_index()
    summary = ", ".join(f"{name}: {n}" for name, n in counts.items()) or "no rows"
    if len(counts) < 2:
        raise TrainingDataError(
            f"{CLEAN_TABLE} has {len(data)} rows of {len(counts)} species ({summary}): a classifier needs at "
            "least two species"
        )
    try:
        train, test = train_test_split(
            data, test_size=test_fraction, stratify=data[TARGET], random_state=random_state
        )
    except ValueError as err:
        raise TrainingDataError(
            f"too few rows to split ({summary}) into a training set and a {test_fraction:.0%} held-out set "
            f"stratified by species: {err}"
        ) from err
    in_train = train[TARGET].value_counts().reindex(counts.index, fill_value=0)
    in_test = test[TARGET].value_counts().reindex(counts.index, fill_value=0)
    thin = [name for name in counts.index if in_train[name] < cv_folds or in_test[name] < 1]
    if thin:
        raise TrainingDataError(
            f"too few rows of {thin} ({summary}): each species needs at least CV_FOLDS={cv_folds} training "
            f"rows and 1 held-out row (TEST_FRACTION={test_fraction})"
        )
    return train, test


def split_live(labelled: pd.DataFrame, test_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labelled live rows as (older rows: trained on, newest `test_fraction` by labelled_at: tested on).

    The cut moves forward only as labels arrive, so the live test rows of a later run were never trained on
    by an earlier champion either (ties are ordered by feedback_id, so the cut is reproducible)."""
    ordered = labelled.sort_values([LABELLED_AT, "feedback_id"], kind="stable")
    cut = len(ordered) - math.ceil(len(ordered) * test_fraction)
    return ordered.iloc[:cut], ordered.iloc[cut:]


def build_preprocessor() -> ColumnTransformer:
    """Scaled measures then one-hot island then one-hot sex: the column order the API relies on."""
    return ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC_FEATURES),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                CATEGORICAL_FEATURES,
            ),
        ]
    )


def build_forest(settings: PipelineSettings, n_train: int) -> RandomForestClassifier:
    cap = settings.max_samples_per_tree
    return RandomForestClassifier(
        n_estimators=settings.n_estimators,
        max_depth=settings.max_depth,
        min_samples_leaf=settings.min_samples_leaf,
        max_samples=cap if n_train > cap else None,
        random_state=settings.random_state,
        n_jobs=settings.train_n_jobs,
    )


def fit(train: pd.DataFrame, settings: PipelineSettings) -> TrainedModel:
    """Every fitted object sees the training rows only: the held-out split stays unseen until evaluation."""
    label_encoder = LabelEncoder().fit(train[TARGET].to_numpy(dtype=str))
    labels = label_encoder.transform(train[TARGET].to_numpy(dtype=str))
    preprocessor = build_preprocessor().fit(train[FEATURES])
    encoded = preprocessor.transform(train[FEATURES])
    forest = build_forest(settings, len(train)).fit(encoded, labels)
    # Threads are a property of where a model runs, not of the model: the served copy predicts single-threaded
    # (and so deterministically) unless the reader decides otherwise.
    forest.set_params(n_jobs=None)
    pca = PCA(n_components=2, random_state=settings.random_state).fit(encoded)
    return TrainedModel(preprocessor=preprocessor, model=forest, label_encoder=label_encoder, pca=pca)


def stratified_rows(labels: np.ndarray, size: int, random_state: int) -> np.ndarray:
    """Positions of a seeded sample of `size` rows with the class shares of `labels`; all rows if fewer."""
    rows = np.arange(len(labels))
    if len(rows) <= size:
        return rows
    return np.sort(train_test_split(rows, train_size=size, stratify=labels, random_state=random_state)[0])


def training_files(
    model: TrainedModel, train: pd.DataFrame, viz_max: int, random_state: int
) -> dict[str, Any]:
    """The objects of a version folder, keyed by file name (the serving export checked already)."""
    features = train[FEATURES].reset_index(drop=True)
    labels = model.label_encoder.transform(train[TARGET].to_numpy(dtype=str))
    rows = stratified_rows(labels, viz_max, random_state)
    viz_features = features.iloc[rows].reset_index(drop=True)
    projected = model.pca.transform(model.preprocessor.transform(viz_features))
    serving = export.serving_arrays(model, features, labels, rows, projected, random_state)
    return {
        contract.MODEL_FILES["preprocessor"]: model.preprocessor,
        contract.MODEL_FILES["model"]: model.model,
        contract.MODEL_FILES["label_encoder"]: model.label_encoder,
        contract.MODEL_FILES["pca"]: model.pca,
        contract.VIZ_FILE: {
            "features_raw": viz_features,
            "features_pca": pd.DataFrame(projected, columns=["pca1", "pca2"]),
            "labels_encoded": labels[rows],
        },
        contract.SPLIT_FILE: {"features_raw": features, "labels_encoded": labels},
        contract.SERVING_FILE: serving,
    }


def feature_spec(model: TrainedModel, train: pd.DataFrame) -> dict[str, Any]:
    """Training ranges, and mean/std exactly as the scaler uses them (population std)."""
    scaler = model.preprocessor.named_transformers_["numeric"]
    encoder = model.preprocessor.named_transformers_["categorical"]
    return {
        "numeric": [
            {
                "name": name,
                "min": float(train[name].min()),
                "max": float(train[name].max()),
                "mean": float(mean),
                "std": float(std),
            }
            for name, mean, std in zip(NUMERIC_FEATURES, scaler.mean_, scaler.scale_, strict=True)
        ],
        "categorical": [
            {"name": name, "categories": [str(c) for c in categories]}
            for name, categories in zip(CATEGORICAL_FEATURES, encoder.categories_, strict=True)
        ],
    }


def library_versions() -> dict[str, str]:
    libraries = {"python": platform.python_version()}
    libraries.update({name: package_version(name) for name in ("scikit-learn", "numpy", "pandas", "joblib")})
    return libraries


def run_params(model: TrainedModel, settings: PipelineSettings) -> dict[str, Any]:
    return {
        "model": model.model.get_params(),
        "test_fraction": settings.test_fraction,
        "random_state": settings.random_state,
        "cv_folds": settings.cv_folds,
    }


def stage_training(
    clean: pd.DataFrame,
    artifacts_dir: Path,
    settings: PipelineSettings,
    labelled: pd.DataFrame | None = None,
) -> StagedTraining:
    """Split, fit, evaluate, score the promoted model on the same held-out rows and live test rows, and stage
    the version. Training data: `clean` plus the older labelled live rows (`split_live`)."""
    artifacts.ensure_writable(artifacts_dir)  # fail in a second, not after the fit
    live_train, live_test = split_live(
        pd.DataFrame(columns=LABELLED_READ) if labelled is None else labelled, settings.live_test_fraction
    )
    data = prepare(clean if live_train.empty else pd.concat([clean[DATA_COLUMNS], live_train[DATA_COLUMNS]]))
    live = prepare(live_test) if len(live_test) else live_test
    train, test = split(data, settings.test_fraction, settings.random_state, settings.cv_folds)
    model = fit(train, settings)
    metrics = held_out_metrics(model, test)
    metrics["live"] = {"rows": len(live), "accuracy": accuracy(model, live)}
    labels = model.label_encoder.transform(train[TARGET].to_numpy(dtype=str))
    cv_rows = stratified_rows(labels, CV_MAX_ROWS, settings.random_state)
    metrics["cv"] = cross_validation(
        make_pipeline(build_preprocessor(), build_forest(settings, len(cv_rows))),
        train[FEATURES].iloc[cv_rows],
        labels[cv_rows],
        settings.cv_folds,
        settings.random_state,
    )
    fingerprint = data_fingerprint(data)
    params = run_params(model, settings)
    digest = hashlib.sha256(json.dumps([fingerprint, params], sort_keys=True).encode()).hexdigest()
    now = datetime.now(UTC)
    version = artifacts.new_version_id(digest, now)
    classes = [str(c) for c in model.label_encoder.classes_]
    manifest = {
        "schema_version": contract.SCHEMA_VERSION,
        "version": version,
        "created_at": now.isoformat(),
        "data": {
            "fingerprint": fingerprint,
            "source_table": CLEAN_TABLE,
            "rows_total": len(data),
            "rows_train": len(train),
            "rows_test": len(test),
            # Provenance: rows from each table (the live test rows are scored, never trained on).
            "sources": {CLEAN_TABLE: len(clean), LABELLED_TABLE: len(live_train)},
            "rows_live_test": len(live),
            "class_counts": {str(k): int(v) for k, v in data[TARGET].value_counts().sort_index().items()},
        },
        "features": feature_spec(model, train),
        "classes": classes,
        "species_by_island": {
            str(island): sorted(str(s) for s in group.unique())
            for island, group in train.groupby("island")[TARGET]
        },
        "metrics": metrics,
        "params": params,
        "libraries": library_versions(),
    }
    staging = artifacts.stage_version(
        artifacts_dir,
        version,
        training_files(model, train, settings.viz_sample_max, settings.random_state),
        manifest,
        heldout={
            "features": test[FEATURES].reset_index(drop=True),
            "probabilities": model.predict_proba(test),
        },
    )
    return StagedTraining(version, str(staging), metrics, score_current(artifacts_dir, test, live))


def train_and_write(
    clean: pd.DataFrame, artifacts_dir: Path, settings: PipelineSettings | None = None
) -> str:
    """Train and publish a verified version (not promoted); returns its id."""
    staged = stage_training(clean, Path(artifacts_dir), settings or get_settings())
    artifacts.verify_staged(Path(staged.staging_dir))
    artifacts.publish(Path(staged.staging_dir))
    return staged.version
