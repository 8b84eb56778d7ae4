"""One loaded model version, ready to answer: everything a prediction needs, built once, never modified.

The store swaps whole Predictor objects, so a request that picked one up answers entirely from one version.
"""

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import orjson

from app.encoding import FeatureEncoder
from app.forest import FlatForest
from app.loader import LoadedVersion
from app.neighbors import NeighborIndex
from app.schemas import CATEGORICAL_FEATURES, NUMERIC_FEATURES, PenguinFeatures

N_NEIGHBORS = 5
_MEASURES_OF = attrgetter(*NUMERIC_FEATURES)
# Rows on which a version's fast path is checked against its own scikit-learn objects before it is served.
SELF_CHECK_ROWS = 256


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
        pca = objects["pca.joblib"]
        self._pca_axes = np.ascontiguousarray(pca.components_.T)
        self._pca_offset = pca.mean_ @ pca.components_.T
        self._pca_scale = np.sqrt(pca.explained_variance_) if pca.whiten else np.ones(2)

        split = objects["training_split.joblib"]
        frame = split["features_raw"]
        self._split_measures = frame[list(NUMERIC_FEATURES)].to_numpy(dtype=np.float64)
        self._split_categories = self.encoder.category_indices(frame)
        self._split_labels = np.asarray(split["labels_encoded"], dtype=np.intp)
        if len(self._split_labels) != len(frame) or not len(frame):
            raise ValueError("training_split.joblib: features and labels differ in length, or are empty")
        points = self.encoder.encode_many(self._split_measures, self._split_categories)
        self._neighbors = NeighborIndex(points, N_NEIGHBORS)
        self._split_pca = self._project(points)

        self.training_points_json = self._training_points(objects["training_data_for_viz.joblib"])
        self._self_check(objects, frame.head(SELF_CHECK_ROWS), points[:SELF_CHECK_ROWS])

    # --- answering ---

    def predict(self, penguin: PenguinFeatures) -> dict[str, Any]:
        measures = _MEASURES_OF(penguin)
        island = self.encoder.category_index("island", penguin.island)
        sex = self.encoder.category_index("sex", penguin.sex)
        row = self.encoder.encode_one(measures, (island, sex))
        probabilities = self.forest.predict_proba_one(row.astype(np.float32)).tolist()
        best = max(range(len(probabilities)), key=probabilities.__getitem__)  # first maximum, as np.argmax
        x, y = self._project(row).tolist()
        distances, rows = self._neighbors.query_one(row)
        return {
            "species": self.classes[best],
            "probabilities": dict(zip(self.classes, probabilities, strict=True)),
            "neighbors": self._neighbor_dicts(distances, rows),
            "pca": {"x": x, "y": y},
            "model_version": self.version,
            "warnings": self._warnings(measures, island, best, probabilities),
        }

    def predict_batch(
        self, penguins: Sequence[PenguinFeatures], include_neighbors: bool
    ) -> list[dict[str, Any]]:
        measures = np.array(list(map(_MEASURES_OF, penguins)), dtype=np.float64).reshape(
            -1, len(NUMERIC_FEATURES)
        )
        categories = np.column_stack(
            [
                self.encoder.category_positions(field, list(map(attrgetter(field), penguins)))
                for field in CATEGORICAL_FEATURES
            ]
        )
        rows = self.encoder.encode_many(measures, categories)
        probabilities = self.forest.predict_proba(rows.astype(np.float32))
        best = probabilities.argmax(axis=1)
        pca = self._project(rows).tolist()
        neighbors: list[Any] = [None] * len(rows)
        if include_neighbors:
            distances, indices = self._neighbors.query_many(rows)
            neighbors = [self._neighbor_dicts(d, i) for d, i in zip(distances.tolist(), indices, strict=True)]
        flagged = self._may_warn(measures, probabilities, categories[:, 0], best)
        probabilities, best = probabilities.tolist(), best.tolist()
        warnings = {
            i: self._warnings(measures[i].tolist(), int(categories[i, 0]), best[i], probabilities[i])
            for i in flagged
        }
        classes, version = self.classes, self.version
        return [
            {
                "species": classes[b],
                "probabilities": dict(zip(classes, p, strict=True)),
                "neighbors": n,
                "pca": {"x": x, "y": y},
                "model_version": version,
                "warnings": warnings.get(position, []),
            }
            for position, (b, p, n, (x, y)) in enumerate(
                zip(best, probabilities, neighbors, pca, strict=True)
            )
        ]

    def _may_warn(
        self, measures: np.ndarray, probabilities: np.ndarray, islands: np.ndarray, best: np.ndarray
    ) -> list[int]:
        """Rows of a batch that get at least one warning: the conditions of `_warnings`, vectorised."""
        outside = ((measures < self._lows) | (measures > self._highs)).any(axis=1)
        top_two = np.sort(probabilities, axis=1)[:, -2:]
        near_tie = top_two[:, 1] - top_two[:, 0] < self._near_tie_margin
        unseen = ~self._seen[islands, best]
        return np.flatnonzero(outside | near_tie | unseen).tolist()

    def _neighbor_dicts(self, distances: Sequence[float], rows: np.ndarray) -> list[dict[str, Any]]:
        islands, sexes = self.encoder.categories["island"], self.encoder.categories["sex"]
        # Spelled out rather than zipped with NUMERIC_FEATURES: this runs on every request, twice as fast.
        return [
            {
                "bill_length_mm": bill,
                "bill_depth_mm": depth,
                "flipper_length_mm": flipper,
                "body_mass_g": mass,
                "island": islands[island],
                "sex": sexes[sex],
                "species": self.classes[label],
                "distance": distance,
                "pca": {"x": xy[0], "y": xy[1]},
            }
            for (bill, depth, flipper, mass), (island, sex), label, distance, xy in zip(
                self._split_measures[rows].tolist(),
                self._split_categories[rows].tolist(),
                self._split_labels[rows].tolist(),
                distances,
                self._split_pca[rows].tolist(),
                strict=True,
            )
        ]

    def _project(self, rows: np.ndarray) -> np.ndarray:
        """PCA coordinates, as `pca.transform` computes them."""
        return (rows @ self._pca_axes - self._pca_offset) / self._pca_scale

    def _warnings(
        self, measures: Sequence[float], island: int, best: int, probabilities: Sequence[float]
    ) -> list[dict[str, Any]]:
        warnings = [
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
        walked = np.array([self.forest.predict_proba_one(row) for row in expected[:16].astype(np.float32)])
        applied = self.forest.predict_proba(expected.astype(np.float32))
        if not (
            np.allclose(reference, applied, rtol=0, atol=1e-9)
            and np.allclose(reference[:16], walked, atol=1e-9)
        ):
            raise ValueError("the flattened forest does not reproduce the model's probabilities")
        projected = objects["pca.joblib"].transform(expected)
        if not np.allclose(
            projected, (points @ self._pca_axes - self._pca_offset) / self._pca_scale, atol=1e-9
        ):
            raise ValueError("the PCA parameters do not reproduce its projection")
