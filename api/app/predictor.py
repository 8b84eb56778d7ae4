"""One loaded model version, ready to answer: everything a prediction needs, built once, never modified.

The store swaps whole Predictor objects, so a request that picked one up answers entirely from one version.
"""

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np
import orjson

from app.encoding import FeatureEncoder
from app.forest import FlatForest
from app.loader import LoadedVersion, LoadError
from app.neighbors import NeighborIndex
from app.projection import PcaProjection
from app.schemas import PenguinFeatures
from penguins_contract import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    PCA_TOLERANCE,
    SERVING_FILE,
    categories_key,
)

N_NEIGHBORS = 5
_MEASURES_OF = attrgetter(*NUMERIC_FEATURES)
_FOREST_ARRAYS = ("children", "feature", "threshold", "value", "roots", "depths")
_FEW_ROWS = 8
# A /predict request as its micro-batch takes it: the penguin, and its island and sex as category positions.
PredictRequest = tuple[PenguinFeatures, tuple[int, int]]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A batch's answers are tens of thousands of small objects that all outlive the call: cyclic
    collections while they are built free none of them, and cost a visible share of a big batch."""
    if not gc.isenabled():  # paused by a concurrent batch, or by the host program: leave it so
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass(frozen=True, slots=True)
class Scores:
    """What every answer of n penguins is built from, computed for all of them at once."""

    rows: np.ndarray  # the penguins in the model's preprocessed feature space
    probabilities: np.ndarray  # (n, classes), columns in the order of `Predictor.classes`
    best: np.ndarray  # the predicted class of each
    warnings: list[list[dict[str, Any]]]  # each penguin's warnings, as /predict answers them


class Predictor:
    def __init__(self, loaded: LoadedVersion, near_tie_margin: float) -> None:
        manifest, arrays = loaded.manifest, loaded.arrays
        self.version = loaded.version
        self.manifest_json = loaded.manifest_bytes
        self._near_tie_margin = near_tie_margin

        self.classes = tuple(arrays["classes"].tolist())
        if list(self.classes) != manifest.get("classes") or len(self.classes) < 2:
            raise ValueError(f"the export's classes {self.classes} are not the manifest's two or more")

        self.encoder = FeatureEncoder(
            arrays["scaler_mean"],
            arrays["scaler_scale"],
            {field: tuple(arrays[categories_key(field)].tolist()) for field in CATEGORICAL_FEATURES},
        )
        columns = self.encoder.columns(NUMERIC_FEATURES)
        if arrays["columns"].tolist() != columns:
            raise ValueError(f"the export's columns {arrays['columns'].tolist()} are not {columns}")
        spec = manifest["features"]
        declared = {c["name"]: tuple(c["categories"]) for c in spec["categorical"]}
        if declared != self.encoder.categories:
            raise ValueError(f"manifest categories {declared} differ from the export's")
        ranges = {n["name"]: (float(n["min"]), float(n["max"])) for n in spec["numeric"]}
        self._ranges = tuple((name, *ranges[name]) for name in NUMERIC_FEATURES)
        self._lows = np.array([low for _, low, _ in self._ranges])
        self._highs = np.array([high for _, _, high in self._ranges])
        islands = self.encoder.categories["island"]
        # _seen[island, species]: that species lived on that island in the training data.
        self._seen = np.zeros((len(islands), len(self.classes)), dtype=bool)
        for island, species in manifest["species_by_island"].items():
            if island in islands:
                self._seen[
                    islands.index(island), [self.classes.index(s) for s in species if s in self.classes]
                ] = True
        self._seen.flags.writeable = False

        self.forest = FlatForest(
            **{name: arrays[f"forest_{name}"] for name in _FOREST_ARRAYS}, n_features=len(columns)
        )
        if self.forest.n_classes != len(self.classes):
            raise ValueError("the forest's classes do not match the export's")
        self._project = PcaProjection(arrays["pca_components"], arrays["pca_mean"], arrays["pca_scale"])

        measures, self.split_categories, self._split_labels = self._rows(arrays, "split")
        if not len(measures):
            raise ValueError("the export's training split is empty")
        points = self.encoder.encode_many(measures, self.split_categories)
        self._neighbors = NeighborIndex(points, N_NEIGHBORS)
        # What an answer shows of a neighbour, in one table: the four measures, then its PCA position.
        self._split_numbers = np.column_stack([measures, self._project(points)])

        self.training_points_json = self._training_points(arrays)
        self._self_check(arrays, points)

    # --- answering ---

    @property
    def split_measures(self) -> np.ndarray:
        """The training split's four measures (the neighbours' rows), in NUMERIC_FEATURES order."""
        return self._split_numbers[:, : len(NUMERIC_FEATURES)]

    def predict(self, penguin: PenguinFeatures) -> dict[str, Any]:
        """Species, probabilities, the nearest training penguins, the PCA position and warnings."""
        return self.predict_batch((penguin,), include_neighbors=True)[0]

    def predict_batch(
        self, penguins: Sequence[PenguinFeatures], include_neighbors: bool
    ) -> list[dict[str, Any]]:
        """The answer of `predict` for each penguin, from one vectorised pass (neighbours only if asked)."""
        categories = np.array(
            [
                self.encoder.category_positions(field, list(map(attrgetter(field), penguins)))
                for field in CATEGORICAL_FEATURES
            ],
            dtype=np.intp,
        ).T
        return self._answers(_measures(penguins), categories, include_neighbors)

    def categories_of(self, penguin: PenguinFeatures) -> tuple[int, int]:
        """One /predict request's island and sex as positions among this version's categories, checked
        before the request joins a micro-batch: an unknown one is that request's 422 alone."""
        return self.encoder.position("island", penguin.island), self.encoder.position("sex", penguin.sex)

    def answer_requests(self, requests: Sequence[PredictRequest]) -> list[dict[str, Any]]:
        """/predict's micro-batches (see batching.py): each penguin a request of its own, its categories
        already checked by `categories_of`, so nothing in it can fail the others."""
        penguins = [penguin for penguin, _ in requests]
        categories = np.array([positions for _, positions in requests], dtype=np.intp)
        return self._answers(_measures(penguins), categories, include_neighbors=True)

    @_collector_paused()
    def _answers(
        self, measures: np.ndarray, categories: np.ndarray, include_neighbors: bool
    ) -> list[dict[str, Any]]:
        """What /predict answers for each of n penguins given as columns (as `score` takes them)."""
        scores = self.score(measures, categories)
        rows, probabilities, best, warned = scores.rows, scores.probabilities, scores.best, scores.warnings
        neighbors = self._neighbors_of(rows) if include_neighbors else [None] * len(rows)
        classes, version = self.classes, self.version
        # Built part by part from columns (no list per row), the probabilities species by species: the fastest
        # way found to 10,000 small dicts in CPython, faster than dict(zip(classes, row)) per row.
        species = [classes[b] for b in best.tolist()]
        by_species: list[dict[str, float]] = [{} for _ in range(len(rows))]
        for name, column in zip(classes, probabilities.T.tolist(), strict=True):
            for answer, probability in zip(by_species, column, strict=True):
                answer[name] = probability
        positions = [{"x": x, "y": y} for x, y in zip(*self._project(rows).T.tolist(), strict=True)]
        return [
            {
                "species": s,
                "probabilities": p,
                "neighbors": n,
                "pca": xy,
                "model_version": version,
                "warnings": w,
            }
            for s, p, n, xy, w in zip(species, by_species, neighbors, positions, warned, strict=True)
        ]

    def score(self, measures: np.ndarray, categories: np.ndarray) -> Scores:
        """Probabilities, species and warnings of n penguins given as columns: `measures` (n, 4) in
        NUMERIC_FEATURES order, `categories` (n, 2) positions in the model's island and sex categories.
        What /predict's answers and the Open Inference Protocol's tensors are both built from."""
        rows = self.encoder.encode_many(measures, categories)
        probabilities = self.forest.predict_proba(rows)
        best = probabilities.argmax(axis=1)
        # A big batch first picks the rows that may get a warning; a few rows are simply checked one by one.
        few = len(rows) <= _FEW_ROWS
        flagged = range(len(rows)) if few else self._may_warn(measures, probabilities, categories, best)
        warned: list[list[dict[str, Any]]] = [[] for _ in range(len(rows))]
        for i in flagged:
            warned[i] = self._warnings(
                measures[i].tolist(), int(categories[i, 0]), int(best[i]), probabilities[i].tolist()
            )
        return Scores(rows, probabilities, best, warned)

    def _may_warn(
        self, measures: np.ndarray, probabilities: np.ndarray, categories: np.ndarray, best: np.ndarray
    ) -> list[int]:
        """Rows of a batch that get at least one warning: the conditions of `_warnings`, vectorised."""
        outside = ((measures < self._lows) | (measures > self._highs)).any(axis=1)
        top_two = np.sort(probabilities, axis=1)[:, -2:]
        near_tie = top_two[:, 1] - top_two[:, 0] < self._near_tie_margin
        unseen = ~self._seen[categories[:, 0], best]
        return np.flatnonzero(outside | near_tie | unseen).tolist()

    def _neighbors_of(self, rows: np.ndarray) -> list[list[dict[str, Any]]]:
        """The nearest training penguins of each row, nearest first, from three gathers for all rows."""
        distances, nearest = self._neighbors.query(rows)
        islands, sexes = self.encoder.categories["island"], self.encoder.categories["sex"]
        # Spelled out rather than zipped with field names: this runs for every penguin, and is much faster.
        return [
            [
                {
                    "bill_length_mm": bill,
                    "bill_depth_mm": depth,
                    "flipper_length_mm": flipper,
                    "body_mass_g": mass,
                    "island": islands[island],
                    "sex": sexes[sex],
                    "species": self.classes[label],
                    "distance": distance,
                    "pca": {"x": x, "y": y},
                }
                for (bill, depth, flipper, mass, x, y), (island, sex), label, distance in zip(
                    numbers, row_categories, labels, row_distances, strict=True
                )
            ]
            for numbers, row_categories, labels, row_distances in zip(
                self._split_numbers[nearest].tolist(),
                self.split_categories[nearest].tolist(),
                self._split_labels[nearest].tolist(),
                distances.tolist(),
                strict=True,
            )
        ]

    def _warnings(
        self, measures: Sequence[float], island: int, best: int, probabilities: Sequence[float]
    ) -> list[dict[str, Any]]:
        warnings: list[dict[str, Any]] = [
            {
                "code": "outside_training_range",
                "field": name,
                "message": f"{name} {value:g} is outside the training range {low:g} to {high:g}: "
                "the prediction is an extrapolation",
            }
            for value, (name, low, high) in zip(measures, self._ranges, strict=True)
            if not low <= value <= high
        ]
        runner_up = max((i for i in range(len(probabilities)) if i != best), key=probabilities.__getitem__)
        if probabilities[best] - probabilities[runner_up] < self._near_tie_margin:
            warnings.append(
                {
                    "code": "near_tie",
                    "field": None,
                    "message": f"near-tie: {self.classes[best]} {probabilities[best]:.2f} vs "
                    f"{self.classes[runner_up]} {probabilities[runner_up]:.2f}",
                }
            )
        if not self._seen[island, best]:
            island_name = self.encoder.categories["island"][island]
            warnings.append(
                {
                    "code": "species_not_seen_on_island",
                    "field": "island",
                    "message": f"no {self.classes[best]} was seen on {island_name} in the training data",
                }
            )
        return warnings

    # --- built once per version ---

    def _rows(self, arrays: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Measures, category positions and labels of the export's rows `prefix`, checked to be in range
        (they index the category and class tables)."""
        measures = arrays[f"{prefix}_measures"].astype(np.float64)
        categories = arrays[f"{prefix}_categories"].astype(np.intp)
        labels = arrays[f"{prefix}_labels"].astype(np.intp)
        counts = np.array([len(self.encoder.categories[field]) for field in CATEGORICAL_FEATURES])
        fits = (
            measures.shape == (len(labels), len(NUMERIC_FEATURES))
            and categories.shape == (len(labels), len(CATEGORICAL_FEATURES))
            and bool(np.all((categories >= 0) & (categories < counts)))
            and bool(np.all((labels >= 0) & (labels < len(self.classes))))
        )
        if not fits:
            raise ValueError(f"the export's {prefix} rows differ in length or point outside the categories")
        return measures, categories, labels

    def _training_points(self, arrays: dict[str, np.ndarray]) -> bytes:
        measures, categories, labels = self._rows(arrays, "viz")
        projected = arrays["viz_pca"].astype(np.float64)
        if projected.shape != (len(labels), 2):
            raise ValueError("the export's viz_pca is not one (x, y) per training point")
        points: dict[str, Any] = {
            "model_version": self.version,
            "classes": list(self.classes),
            "pca1": projected[:, 0].tolist(),
            "pca2": projected[:, 1].tolist(),
            "species": labels.tolist(),
        }
        points.update({name: measures[:, i].tolist() for i, name in enumerate(NUMERIC_FEATURES)})
        for i, name in enumerate(CATEGORICAL_FEATURES):
            names = self.encoder.categories[name]
            points[name] = [names[c] for c in categories[:, i].tolist()]
        return orjson.dumps(points)

    def _self_check(self, arrays: dict[str, np.ndarray], points: np.ndarray) -> None:
        """The fast path reproduces scikit-learn's outputs stored in the export, or the version is refused."""
        measures = arrays["reference_measures"].astype(np.float64)
        categories = arrays["reference_categories"].astype(np.intp)
        checks = (
            ("preprocessed rows", "reference_rows", np.array_equal),
            ("probabilities", "reference_proba", np.array_equal),
            ("PCA positions", "reference_pca", partial(np.allclose, rtol=0, atol=PCA_TOLERANCE)),
        )
        try:
            rows = self.encoder.encode_many(measures, categories)
            answers = {"reference_rows": rows, "reference_proba": self.forest.predict_proba(rows)}
            answers["reference_pca"] = self._project(rows)
        except (ValueError, IndexError) as err:
            raise _mismatch(self.version, f"the reference rows cannot be answered ({err})") from err
        for what, name, same in checks:
            if answers[name].shape != arrays[name].shape or not same(answers[name], arrays[name]):
                raise _mismatch(self.version, f"the fast path does not reproduce scikit-learn's {what}")
        distances, nearest = self._neighbors.query(points[:1])  # also compiles the scan before serving
        if distances[0, 0] != 0 or not np.array_equal(points[nearest[0, 0]], points[0]):
            raise _mismatch(self.version, "the neighbour index misses a training row as its own nearest")


def _measures(penguins: Sequence[PenguinFeatures]) -> np.ndarray:
    """(n, 4) float64, in NUMERIC_FEATURES order."""
    return np.fromiter(
        chain.from_iterable(map(_MEASURES_OF, penguins)), np.float64, len(penguins) * len(NUMERIC_FEATURES)
    ).reshape(len(penguins), len(NUMERIC_FEATURES))


def _mismatch(version: str, what: str) -> LoadError:
    return LoadError(
        "reference_mismatch",
        f"version {version}: {what} on the reference rows of its {SERVING_FILE}: refused (retrain it)",
    )
