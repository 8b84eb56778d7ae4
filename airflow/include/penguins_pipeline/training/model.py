"""The fitted objects of one model version, and the one way they turn penguins into species."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from penguins_pipeline.core.schema import FEATURES

if TYPE_CHECKING:  # only for the annotations: the artifacts CLI should not pay for importing scikit-learn
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import LabelEncoder


@dataclass(frozen=True)
class TrainedModel:
    preprocessor: "ColumnTransformer"
    model: "RandomForestClassifier"
    label_encoder: "LabelEncoder"
    pca: "PCA"

    def predict_proba(self, rows: "pd.DataFrame") -> np.ndarray:
        """Class probabilities, columns in `label_encoder.classes_` order."""
        return self.model.predict_proba(self.preprocessor.transform(rows[FEATURES]))

    def predict(self, rows: "pd.DataFrame") -> np.ndarray:
        """Species names (the forest itself only knows the encoded labels)."""
        encoded = self.model.classes_[np.argmax(self.predict_proba(rows), axis=1)]
        return self.label_encoder.inverse_transform(encoded)
