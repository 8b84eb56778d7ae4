"""Names and physical limits shared by every step, so ingest, clean and train agree on one schema.

The features, their physical bounds and the version-id pattern are the API's too: they come from
`penguins_contract`, here as lists because pandas indexes columns with lists.
"""

import penguins_contract as contract

RAW_TABLE = "penguins_raw"
CLEAN_TABLE = "penguins_clean"
# Both DAGs build `Asset(CLEAN_ASSET_NAME)`: the producer and the consumer must name the identical Asset.
CLEAN_ASSET_NAME = CLEAN_TABLE
# monitor_pipeline emits this Asset only when a report finds drift: a DAG scheduled on it reacts to drift.
DRIFT_ASSET_NAME = "penguins_drift"
# Labelled live predictions (monitor_pipeline rebuilds it; train_pipeline trains on its older rows and tests
# on its newest). It may not exist yet: then there are no live rows.
LABELLED_TABLE = "penguins_labelled"
# When a prediction was labelled: orders the live rows, so the newest are the live test set.
LABELLED_AT = "labelled_at"
# ARTIFACTS_DIR/retraining/latest.json: the last challenger-against-champion decision (train_pipeline writes
# it, the drift report shows it).
RETRAINING_DIR = "retraining"
RETRAINING_FILE = "latest.json"

TARGET = "species"
NUMERIC_FEATURES = list(contract.NUMERIC_FEATURES)
CATEGORICAL_FEATURES = list(contract.CATEGORICAL_FEATURES)
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
# The columns of `palmerpenguins.load_penguins()`, in its order.
DATA_COLUMNS = ["species", "island", *NUMERIC_FEATURES, "sex", "year"]

# Physically plausible ranges for any penguin (the API rejects requests outside them too).
PHYSICAL_BOUNDS = contract.PHYSICAL_BOUNDS

# Every value a categorical column may take, spelled as in palmerpenguins (island and species title-case, sex
# lower-case). Cleaning maps any case and surrounding spaces onto these and rejects anything else, so a stray
# "Female" can never become a category of its own.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "species": ("Adelie", "Chinstrap", "Gentoo"),
    "island": ("Biscoe", "Dream", "Torgersen"),
    "sex": ("female", "male"),
}
# A row is usable only with all of these; `year` is kept when present (seaborn's copy has none).
REQUIRED_COLUMNS = [TARGET, *FEATURES]
# The key of both tables: the row's 1-based position in the source, so every clean row points at its raw row.
ROW_KEY = "source_row"
# A model version id, e.g. 20261127T123456123456Z-1a2b3c4d (the DAG's `version` param accepts it).
VERSION_ID_PATTERN = contract.VERSION_ID_PATTERN
