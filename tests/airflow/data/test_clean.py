"""The cleaning rules on the real penguins (exact counts) and on crafted rows, one rule at a time."""

import numpy as np
import pandas as pd
import pytest

from penguins_pipeline.core.schema import DATA_COLUMNS, ROW_KEY
from penguins_pipeline.data.clean import REASONS, CleanReport, SeenRows, clean_chunk
from penguins_pipeline.data.sources import DTYPES, numbered, open_source

GOOD = {
    "species": "Adelie",
    "island": "Dream",
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181.0,
    "body_mass_g": 3750.0,
    "sex": "male",
    "year": 2007,
}


def raw_rows(*changes: dict[str, object]) -> pd.DataFrame:
    """One raw row per `changes`: a good penguin with those values changed, keyed 1, 2, ..."""
    frame = pd.DataFrame([{**GOOD, **change} for change in changes]).astype(DTYPES)
    return next(numbered([frame], ROW_KEY))


def clean_all(chunks: list[pd.DataFrame]) -> tuple[pd.DataFrame, CleanReport]:
    seen, report, kept = SeenRows(), CleanReport(), []
    for chunk in chunks:
        rows, dropped = clean_chunk(chunk, seen)
        report.add(len(chunk), dropped, len(rows))
        kept.append(rows)
    return pd.concat(kept, ignore_index=True), report


def test_real_penguins_keep_333_of_344() -> None:
    raw = list(numbered(open_source("palmerpenguins", 50_000), ROW_KEY))
    clean, report = clean_all(raw)
    assert report.rows_in == 344
    assert report.dropped == {"missing_value": 11, "unknown_category": 0, "out_of_bounds": 0, "duplicate": 0}
    assert report.rows_out == len(clean) == 333
    assert str(report) == (
        "344 rows in, dropped: missing_value 11, unknown_category 0, out_of_bounds 0, duplicate 0; "
        "333 rows out"
    )
    # Exactly the rows with every value, untouched (the data is already canonical), keys of their raw rows.
    expected = raw[0].dropna(subset=["sex", "bill_length_mm"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(clean, expected)
    assert clean[DATA_COLUMNS].notna().all().all()


def test_categories_are_trimmed_and_spelled_as_in_palmerpenguins() -> None:
    clean, report = clean_all([raw_rows({"species": " gentoo", "island": "BISCOE ", "sex": " Female "})])
    assert report.rows_out == 1
    assert clean.loc[0, ["species", "island", "sex"]].tolist() == ["Gentoo", "Biscoe", "female"]


@pytest.mark.parametrize(
    "change",
    [
        {"sex": None},
        {"sex": "   "},
        {"island": ""},
        {"species": None},
        {"bill_length_mm": np.nan},
        {"body_mass_g": np.nan, "sex": "unknown"},  # missing wins over unknown: one reason per row
    ],
)
def test_missing_or_blank_values_drop_the_row(change: dict[str, object]) -> None:
    clean, report = clean_all([raw_rows(change)])
    assert report.dropped["missing_value"] == 1 and report.rows_out == 0 and clean.empty


@pytest.mark.parametrize(
    "change", [{"sex": "Femal"}, {"island": "Anvers"}, {"species": "Emperor"}, {"sex": "."}]
)
def test_unknown_categories_drop_the_row(change: dict[str, object]) -> None:
    _, report = clean_all([raw_rows(change)])
    assert report.dropped["unknown_category"] == 1 and report.rows_out == 0


@pytest.mark.parametrize(
    "change",
    [
        {"bill_length_mm": 391.0},
        {"bill_depth_mm": 0.0},
        {"flipper_length_mm": -181.0},
        {"body_mass_g": 3.75},  # kilograms, not grams
        {"body_mass_g": 3750.0, "flipper_length_mm": 1810.0},
    ],
)
def test_implausible_measures_drop_the_row(change: dict[str, object]) -> None:
    _, report = clean_all([raw_rows(change)])
    assert report.dropped["out_of_bounds"] == 1 and report.rows_out == 0


def test_bounds_are_inclusive() -> None:
    _, report = clean_all([raw_rows({"bill_length_mm": 20.0, "body_mass_g": 8000.0})])
    assert report.rows_out == 1


def test_duplicates_after_normalisation_keep_the_first_across_chunks() -> None:
    rows = raw_rows({}, {"sex": "MALE "}, {"year": 2008}, {}, {"year": None}, {"year": None})
    chunks = [rows.iloc[:2], rows.iloc[2:4], rows.iloc[4:]]
    clean, report = clean_all(chunks)
    # Rows 2 and 4 repeat row 1; row 6 repeats row 5 (a missing year is a value like any other).
    assert clean[ROW_KEY].tolist() == [1, 3, 5]
    assert report.dropped["duplicate"] == 3


def test_a_missing_year_is_kept() -> None:
    clean, _ = clean_all([raw_rows({"year": None})])
    assert len(clean) == 1 and pd.isna(clean.loc[0, "year"])


def test_any_chunking_gives_the_same_clean_rows() -> None:
    raw = pd.concat(numbered(open_source("synthetic:3000", 50_000), ROW_KEY), ignore_index=True)
    whole, whole_report = clean_all([raw])
    pieces, pieces_report = clean_all([raw.iloc[start : start + 128] for start in range(0, len(raw), 128)])
    pd.testing.assert_frame_equal(whole, pieces)
    assert whole_report == pieces_report
    assert whole_report.dropped["duplicate"] > 0 and whole_report.dropped["missing_value"] > 0
    # Same as pandas' own rules on the whole frame: complete rows, first of each duplicate group.
    expected = raw.dropna(subset=["sex", "bill_length_mm"]).drop_duplicates(subset=DATA_COLUMNS)
    assert whole[ROW_KEY].tolist() == expected[ROW_KEY].tolist()


def test_every_row_is_accounted_for() -> None:
    rows = raw_rows({}, {}, {"sex": None}, {"island": "Mars"}, {"body_mass_g": 1.0}, {"species": "chinstrap"})
    clean, report = clean_all([rows])
    assert set(report.dropped) == set(REASONS)
    assert report.rows_in == sum(report.dropped.values()) + report.rows_out == 6
    assert report.dropped == {"missing_value": 1, "unknown_category": 1, "out_of_bounds": 1, "duplicate": 1}
    assert clean[ROW_KEY].tolist() == [1, 6]
