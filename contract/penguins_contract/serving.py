"""The arrays of `serving.npz`, the version's serving export: the pipeline writes them from the fitted
scikit-learn objects, the API answers from them alone. Plain numeric and unicode arrays, no pickles.

The `reference_*` arrays are scikit-learn's own outputs on some rows, computed when the version was trained:
a reader proves its fast path on them before serving it.
"""

from penguins_contract.features import CATEGORICAL_FEATURES

# How far a reader's PCA positions may be from `reference_pca`: the API sums feature by feature, scikit-learn
# multiplies matrices; their rounding differs by far less than this.
PCA_TOLERANCE = 1e-9


def categories_key(field: str) -> str:
    """The array of a categorical feature's categories, in the one-hot encoder's order."""
    return f"categories_{field}"


SERVING_ARRAYS: tuple[str, ...] = (
    "classes",  # species names; labels are positions in it
    # The preprocessor: (measure - mean) / scale, then one one-hot block per categorical feature.
    "scaler_mean",
    "scaler_scale",
    *(categories_key(field) for field in CATEGORICAL_FEATURES),
    "columns",  # the preprocessor's output columns, e.g. "bill_length_mm", "island=Biscoe"
    # The forest, trees concatenated with global node ids (a leaf is its own child).
    "forest_children",
    "forest_feature",
    "forest_threshold",
    "forest_value",
    "forest_roots",
    "forest_depths",
    # The chart's PCA: (row @ components.T - mean @ components.T) / scale.
    "pca_components",
    "pca_mean",
    "pca_scale",
    # The whole training split (the neighbours): raw measures, category positions, labels.
    "split_measures",
    "split_categories",
    "split_labels",
    # The chart's training points.
    "viz_measures",
    "viz_categories",
    "viz_labels",
    "viz_pca",
    # scikit-learn's outputs at export time on reference rows (split rows, then random in-bounds rows).
    "reference_measures",
    "reference_categories",
    "reference_rows",
    "reference_proba",
    "reference_pca",
)
