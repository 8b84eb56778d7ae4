"""One loaded model version, ready to answer: everything a prediction needs, built once, never modified.

The store swaps whole Predictor objects, so a request that picked one up answers entirely from one version.
"""

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np
import orjson

from app.encoding import FeatureEncoder, UnknownCategoryError
from app.forest import FlatForest
from app.loader import LoadedVersion
from app.neighbors import NeighborIndex
from app.projection import PcaProjection
from app.schemas import PenguinFeatures
from penguins_contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES

N_NEIGHBORS = 5
_MEASURES_OF = attrgetter(*NUMERIC_FEATURES)
# Rows on which a version's fast path is checked against its own scikit-learn objects before it is served.
SELF_CHECK_ROWS = 256
_FEW_ROWS = 8


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


class Predictor:
    def __init__(self, loaded: LoadedVersion, near_tie_margin: float) -> None:
        manifest, objects = loaded.manifest, loaded.objects
        self.version = loaded.version
        self.manifest_json = loaded.manifest_bytes
        self._near_tie_margin = near_tie_margin

        label_encoder = objects["label_encoder.joblib"]
        model = objects["model.joblib"]
        self.classes = tuple(str(c) for c in label_encoder.classes_)
        if list(self.classes) != manifest.get("classes"):
            raise ValueError(f"label encoder classes {self.classes} differ from the manifest's")
        if len(self.classes) < 2 or list(model.classes_) != list(range(len(self.classes))):
            raise ValueError("the forest must be trained on two or more label-encoded species 0..n-1")

        self.encoder = FeatureEncoder(objects["preprocessor.joblib"], NUMERIC_FEATURES, CATEGORICAL_FEATURES)
        spec = manifest["features"]
        declared = {c["name"]: tuple(c["categories"]) for c in spec["categorical"]}
        if declared != self.encoder.categories:
            raise ValueError(f"manifest categories {declared} differ from the preprocessor's")
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

        self.forest = FlatForest(model)
        self._project = PcaProjection(objects["pca.joblib"])

        split = objects["training_split.joblib"]
        frame = split["features_raw"]
        measures = frame[list(NUMERIC_FEATURES)].to_numpy(dtype=np.float64)
        self._split_categories = self.encoder.category_indices(frame)
        self._split_labels = np.asarray(split["labels_encoded"], dtype=np.intp)
        if len(self._split_labels) != len(frame) or not len(frame):
            raise ValueError("training_split.joblib: features and labels differ in length, or are empty")
        points = self.encoder.encode_many(measures, self._split_categories)
        self._neighbors = NeighborIndex(points, N_NEIGHBORS)
        # What an answer shows of a neighbour, in one table: the four measures, then its PCA position.
        self._split_numbers = np.column_stack([measures, self._project(points)])

        self.training_points_json = self._training_points(objects["training_data_for_viz.joblib"])
        self._self_check(objects, frame.head(SELF_CHECK_ROWS), points[:SELF_CHECK_ROWS])

    # --- answering ---

    def predict(self, penguin: PenguinFeatures) -> dict[str, Any]:
        """Species, probabilities, the nearest training penguins, the PCA position and warnings."""
        return self.predict_batch((penguin,), include_neighbors=True)[0]

    @_collector_paused()
    def predict_batch(
        self, penguins: Sequence[PenguinFeatures], include_neighbors: bool
    ) -> list[dict[str, Any]]:
        """The answer of `predict` for each penguin, from one vectorised pass (neighbours only if asked)."""
        measures = np.fromiter(
            chain.from_iterable(map(_MEASURES_OF, penguins)),
            np.float64,
            len(penguins) * len(NUMERIC_FEATURES),
        ).reshape(len(penguins), len(NUMERIC_FEATURES))
        categories = np.array(
            [
                self.encoder.category_positions(field, list(map(attrgetter(field), penguins)))
                for field in CATEGORICAL_FEATURES
            ],
            dtype=np.intp,
        ).T
        rows = self.encoder.encode_many(measures, categories)
        probabilities = self.forest.predict_proba(rows)
        best = probabilities.argmax(axis=1)
        neighbors = self._neighbors_of(rows) if include_neighbors else [None] * len(rows)
        # A big batch first picks the rows that may get a warning; a few rows are simply checked one by one.
        few = len(rows) <= _FEW_ROWS
        flagged = range(len(rows)) if few else self._may_warn(measures, probabilities, categories, best)
        warned: list[list[dict[str, Any]]] = [[] for _ in range(len(rows))]
        for i in flagged:
            warned[i] = self._warnings(
                measures[i].tolist(), int(categories[i, 0]), int(best[i]), probabilities[i].tolist()
            )
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

    def answer_requests(self, penguins: Sequence[PenguinFeatures]) -> list[dict[str, Any]]:
        """/predict's micro-batches (see batching.py): each penguin is a request of its own, so an error
        names no position (the batcher answers the others again without the bad one)."""
        try:
            return self.predict_batch(penguins, include_neighbors=True)
        except UnknownCategoryError as error:
            error.position = None
            raise

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
        # Spelled out rather than zipped with field names: this runs for every penguin, twice as fast.
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
                self._split_categories[nearest].tolist(),
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

    def _training_points(self, viz: dict[str, Any]) -> bytes:
        frame, projected = viz["features_raw"], viz["features_pca"]
        labels = np.asarray(viz["labels_encoded"], dtype=np.intp)
        if not len(frame) == len(projected) == len(labels):
            raise ValueError("training_data_for_viz.joblib: its parts differ in length")
        points = {
            "model_version": self.version,
            "classes": list(self.classes),
            "pca1": projected["pca1"].astype(float).tolist(),
            "pca2": projected["pca2"].astype(float).tolist(),
            "species": labels.tolist(),
        }
        points.update({name: frame[name].astype(float).tolist() for name in NUMERIC_FEATURES})
        points.update({name: frame[name].astype(str).tolist() for name in CATEGORICAL_FEATURES})
        return orjson.dumps(points)

    def _self_check(self, objects: dict[str, Any], frame: Any, points: np.ndarray) -> None:
        """The arrays reproduce the pickled objects on real rows, or the version is refused."""
        expected = objects["preprocessor.joblib"].transform(frame[[*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]])
        expected = np.asarray(
            expected.toarray() if hasattr(expected, "toarray") else expected, dtype=np.float64
        )
        if not np.array_equal(expected, points):
            raise ValueError("the preprocessor's fitted parameters do not reproduce its output")
        reference = objects["model.joblib"].predict_proba(expected)
        if not np.allclose(reference, self.forest.predict_proba(expected), rtol=0, atol=1e-9):
            raise ValueError("the flattened forest does not reproduce the model's probabilities")
        distances, nearest = self._neighbors.query(points[:1])  # also compiles the scan before serving
        if distances[0, 0] != 0 or not np.array_equal(points[nearest[0, 0]], points[0]):
            raise ValueError("the neighbour index does not find a training row as its own nearest")
        projected = objects["pca.joblib"].transform(expected)
        if not np.allclose(projected, self._project(points), atol=1e-9):
            raise ValueError("the PCA parameters do not reproduce its projection")
