"""The sources: exact real rows, typed chunks, deterministic synthetic rows, failures naming the cause."""

from pathlib import Path

import palmerpenguins
import pandas as pd
import pytest

from penguins_pipeline.core.schema import CATEGORIES, DATA_COLUMNS, ROW_KEY
from penguins_pipeline.data.sources import DTYPES, SourceError, numbered, open_source
from penguins_pipeline.data.synthetic import BLOCK_ROWS, apportion


def read_all(spec: str, chunk_rows: int = 50_000) -> pd.DataFrame:
    return pd.concat(list(open_source(spec, chunk_rows)), ignore_index=True)


def test_palmerpenguins_gives_the_344_penguins_as_they_are() -> None:
    chunks = list(open_source("palmerpenguins", 50_000))
    assert len(chunks) == 1
    frame = chunks[0]
    assert list(frame.columns) == DATA_COLUMNS
    assert frame.dtypes.astype(str).to_dict() == {
        column: str(pd.Series(dtype=t).dtype) for column, t in DTYPES.items()
    }
    assert len(frame) == 344
    assert frame["species"].value_counts().to_dict() == {"Adelie": 152, "Gentoo": 124, "Chinstrap": 68}
    assert frame["sex"].isna().sum() == 11
    assert frame["bill_length_mm"].isna().sum() == 2
    expected = palmerpenguins.load_penguins()
    pd.testing.assert_frame_equal(frame, expected.astype(DTYPES))


def test_numbered_counts_rows_across_chunks() -> None:
    chunks = [pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3]}), pd.DataFrame({"a": [4, 5]})]
    keys = [list(chunk[ROW_KEY]) for chunk in numbered(chunks, ROW_KEY)]
    assert keys == [[1, 2], [3], [4, 5]]


def write_csv(path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return f"csv:{path}"


def test_csv_is_read_in_chunks_with_the_same_values(tmp_path: Path) -> None:
    penguins = palmerpenguins.load_penguins()
    chunks = list(open_source(write_csv(tmp_path / "p.csv", penguins), 100))
    assert [len(chunk) for chunk in chunks] == [100, 100, 100, 44]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), penguins.astype(DTYPES))


def test_csv_without_year_is_accepted_with_missing_years(tmp_path: Path) -> None:
    penguins = palmerpenguins.load_penguins().drop(columns="year")
    frame = read_all(write_csv(tmp_path / "p.csv", penguins))
    assert frame["year"].isna().all() and len(frame) == 344


def test_csv_missing_columns_fail_naming_them(tmp_path: Path) -> None:
    penguins = palmerpenguins.load_penguins().drop(columns=["island", "body_mass_g"])
    with pytest.raises(SourceError, match=r"lacks the column\(s\) body_mass_g, island"):
        read_all(write_csv(tmp_path / "p.csv", penguins))


def test_csv_wrong_types_fail_naming_the_columns_and_rows(tmp_path: Path) -> None:
    penguins = palmerpenguins.load_penguins()
    penguins["bill_depth_mm"] = penguins["bill_depth_mm"].astype(object)
    penguins.loc[250, "bill_depth_mm"] = "eighteen"
    penguins["year"] = penguins["year"].astype(float)
    penguins.loc[260, "year"] = 2008.5
    chunks = open_source(write_csv(tmp_path / "p.csv", penguins), 100)
    assert len(next(chunks)) == 100 and len(next(chunks)) == 100
    with pytest.raises(
        SourceError, match=r"rows 201-300\).*bill_depth_mm \(1 value.*'eighteen'.*year \(1 value"
    ):
        next(chunks)


def test_csv_that_is_not_a_file_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"missing\.csv is not a readable file"):
        read_all(f"csv:{tmp_path / 'missing.csv'}")


def test_seaborn_offline_names_the_network_and_suggests_palmerpenguins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No cached copy: seaborn must really try to download (this machine has no network).
    monkeypatch.setenv("SEABORN_DATA", str(tmp_path / "seaborn-data"))
    with pytest.raises(SourceError, match=r"network.*unreachable.*PENGUINS_SOURCE=palmerpenguins"):
        read_all("seaborn")


@pytest.mark.parametrize("spec", ["penguins", "csv", "csv:", "synthetic", "palmerpenguins:x", "mysql:x"])
def test_unknown_sources_fail_listing_the_valid_ones(spec: str) -> None:
    with pytest.raises(SourceError, match=r"unknown PENGUINS_SOURCE.*palmerpenguins \| seaborn"):
        open_source(spec, 10)


@pytest.mark.parametrize(
    ("spec", "message"), [("synthetic:ten", "whole number"), ("synthetic:-5", "0 or more")]
)
def test_bad_synthetic_counts_fail_clearly(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        read_all(spec)


def test_synthetic_is_deterministic_realistic_and_balanced() -> None:
    rows = BLOCK_ROWS + 1_234
    first, second = read_all(f"synthetic:{rows}"), read_all(f"synthetic:{rows}")
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == rows
    assert list(first.columns) == DATA_COLUMNS
    real = palmerpenguins.load_penguins()
    # Species in the real proportions (exactly, block by block), categorical values untouched.
    shares = real["species"].value_counts(normalize=True)
    expected = apportion(BLOCK_ROWS, shares) + apportion(1_234, shares)
    assert first["species"].value_counts().sort_index().equals(expected.sort_index().rename("count"))
    for column, values in CATEGORIES.items():
        assert set(first[column].dropna()) <= set(values)
    # Measures stay close to the real ones, species by species.
    real_means = real.groupby("species")[["bill_length_mm", "body_mass_g"]].mean()
    synthetic_means = first.groupby("species")[["bill_length_mm", "body_mass_g"]].mean()
    assert ((synthetic_means - real_means).abs() / real_means).max().max() < 0.02
    # The real gaps are resampled too, so raw data keeps something to clean.
    assert first["sex"].isna().any()


def test_synthetic_zero_rows_gives_no_chunk() -> None:
    assert list(open_source("synthetic:0", 10)) == []
