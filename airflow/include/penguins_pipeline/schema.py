"""Names and physical limits shared by every step, so ingest, clean and train agree on one schema."""

RAW_TABLE = "penguins_raw"
CLEAN_TABLE = "penguins_clean"
# Both DAGs build `Asset(CLEAN_ASSET_NAME)`: the producer and the consumer must name the identical Asset.
CLEAN_ASSET_NAME = CLEAN_TABLE

TARGET = "species"
NUMERIC_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL_FEATURES = ["island", "sex"]
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
# The columns of `palmerpenguins.load_penguins()`, in its order.
DATA_COLUMNS = ["species", "island", *NUMERIC_FEATURES, "sex", "year"]

# Physically plausible ranges for any penguin of these three species (generous: rejects typos such as
# 4500 mm of bill or a body mass in kg, not rare birds). Training ranges are narrower and live in the
# manifest.
PHYSICAL_BOUNDS: dict[str, tuple[float, float]] = {
    "bill_length_mm": (20.0, 80.0),
    "bill_depth_mm": (8.0, 30.0),
    "flipper_length_mm": (140.0, 260.0),
    "body_mass_g": (1500.0, 8000.0),
}

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
# A model version id: UTC time to the microsecond (lexical order = chronological) and 8 hex of the data+params
# hash, e.g. 20261127T123456123456Z-1a2b3c4d. The API accepts the same pattern (no path can sneak in).
VERSION_ID_PATTERN = r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}$"
