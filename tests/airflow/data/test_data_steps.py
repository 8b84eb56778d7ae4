"""The five steps of data_pipeline as plain functions, on SQLite and MariaDB: results, and failures that
leave the published tables exactly as they were."""

from pathlib import Path

import palmerpenguins
import pandas as pd
import pytest
import sqlalchemy as sa

from penguins_pipeline.core import store
from penguins_pipeline.core.bulk import read_frames
from penguins_pipeline.core.schema import CLEAN_TABLE, DATA_COLUMNS, RAW_TABLE, ROW_KEY
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.data import steps as data_steps
from penguins_pipeline.data.sources import SourceError


def run_all(settings: PipelineSettings, run_id: str) -> dict:
    ingested = data_steps.ingest(settings, run_id)
    data_steps.store_raw(settings, ingested)
    cleaned = data_steps.store_clean(settings, data_steps.clean(settings, run_id))
    return data_steps.validate(settings, cleaned, run_id)


def snapshot(url: str) -> dict[str, pd.DataFrame]:
    """Every table of the store, fully read: what a failed run must leave unchanged."""
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            names = sorted(sa.inspect(conn).get_table_names())
            tables = {
                RAW_TABLE: store.raw_table(RAW_TABLE),
                CLEAN_TABLE: store.clean_table(CLEAN_TABLE),
            }
            return {
                name: pd.concat(read_frames(conn, tables[name], 1000), ignore_index=True) for name in names
            }
    finally:
        engine.dispose()


def test_a_run_fills_both_tables_with_exact_counts(db_url: str) -> None:
    settings = PipelineSettings(penguins_db_url=db_url)
    assert run_all(settings, "run-1") == {"raw_rows": 344, "clean_rows": 333, "run_id": "run-1"}
    tables = snapshot(db_url)
    assert set(tables) == {RAW_TABLE, CLEAN_TABLE}
    raw, clean = tables[RAW_TABLE], tables[CLEAN_TABLE]
    # Raw: every source row, as it came, NULL where missing, with its metadata.
    expected = palmerpenguins.load_penguins()
    pd.testing.assert_frame_equal(raw[DATA_COLUMNS], expected, check_dtype=False)
    assert raw[ROW_KEY].tolist() == list(range(1, 345))
    assert raw["sex"].isna().sum() == 11 and raw["body_mass_g"].isna().sum() == 2
    assert set(raw["run_id"]) == {"run-1"} and raw["loaded_at"].nunique() == 1
    # Clean: the complete rows, keyed by their raw row.
    assert len(clean) == 333 and clean[DATA_COLUMNS].notna().all().all()
    complete = raw.dropna(subset=["sex", "body_mass_g"])
    assert clean[ROW_KEY].tolist() == complete[ROW_KEY].tolist()
    pd.testing.assert_frame_equal(clean.drop(columns="run_id"), store.read_clean(db_url))


def test_a_second_run_gives_the_same_rows(db_url: str) -> None:
    settings = PipelineSettings(penguins_db_url=db_url, penguins_source="synthetic:3000", chunk_rows=700)
    run_all(settings, "first")
    first = snapshot(db_url)
    run_all(settings, "second")
    second = snapshot(db_url)
    assert first.keys() == second.keys() == {RAW_TABLE, CLEAN_TABLE}
    pd.testing.assert_frame_equal(
        second[CLEAN_TABLE].drop(columns="run_id"), first[CLEAN_TABLE].drop(columns="run_id")
    )
    data = [ROW_KEY, *DATA_COLUMNS]
    pd.testing.assert_frame_equal(second[RAW_TABLE][data], first[RAW_TABLE][data])
    assert set(second[RAW_TABLE]["run_id"]) == set(second[CLEAN_TABLE]["run_id"]) == {"second"}


def test_the_clean_step_reports_rows_in_dropped_and_out(sqlite_url: str) -> None:
    settings = PipelineSettings(penguins_db_url=sqlite_url)
    data_steps.store_raw(settings, data_steps.ingest(settings, "r"))
    report = data_steps.clean(settings, "r")
    assert report == {
        "staging": store.staging_name(CLEAN_TABLE, "r"),
        "rows_in": 344,
        "dropped": {"missing_value": 11, "unknown_category": 0, "out_of_bounds": 0, "duplicate": 0},
        "rows_out": 333,
    }


def failed_run_leaves_everything(url: str, settings: PipelineSettings, error: type, match: str) -> None:
    run_all(PipelineSettings(penguins_db_url=url), "good-run")
    before = snapshot(url)
    with pytest.raises(error, match=match):
        run_all(settings, "bad-run")
    after = snapshot(url)
    assert after.keys() == before.keys() == {RAW_TABLE, CLEAN_TABLE}  # no staging table left behind
    for name, table in before.items():
        pd.testing.assert_frame_equal(after[name], table)


def test_an_empty_source_fails_and_keeps_the_tables(db_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(DATA_COLUMNS) + "\n")
    settings = PipelineSettings(penguins_db_url=db_url, penguins_source=f"csv:{empty}")
    failed_run_leaves_everything(
        db_url, settings, SourceError, "gave no rows: the tables are left as they were"
    )


def test_a_source_failing_midway_keeps_the_tables(db_url: str, tmp_path: Path) -> None:
    penguins = palmerpenguins.load_penguins()
    penguins["flipper_length_mm"] = penguins["flipper_length_mm"].astype(object)
    penguins.loc[300, "flipper_length_mm"] = "n/a cm"
    penguins.to_csv(tmp_path / "broken.csv", index=False)
    # Chunks of 100: three chunks are loaded into staging before the fourth fails.
    source = f"csv:{tmp_path / 'broken.csv'}"
    settings = PipelineSettings(penguins_db_url=db_url, penguins_source=source, chunk_rows=100)
    failed_run_leaves_everything(db_url, settings, SourceError, r"rows 301-344\).*flipper_length_mm")


def test_a_source_with_no_usable_row_keeps_the_clean_table(sqlite_url: str, tmp_path: Path) -> None:
    penguins = palmerpenguins.load_penguins()
    penguins["sex"] = "unknown"
    penguins.to_csv(tmp_path / "unsexed.csv", index=False)
    run_all(PipelineSettings(penguins_db_url=sqlite_url), "good-run")
    before = store.read_clean(sqlite_url)
    settings = PipelineSettings(penguins_db_url=sqlite_url, penguins_source=f"csv:{tmp_path / 'unsexed.csv'}")
    with pytest.raises(
        SourceError, match=r"no usable row.*missing_value 2, unknown_category 342.*penguins_clean is left"
    ):
        run_all(settings, "bad-run")
    pd.testing.assert_frame_equal(store.read_clean(sqlite_url), before)


def test_clean_before_any_load_says_to_run_the_pipeline(sqlite_url: str) -> None:
    with pytest.raises(store.DataNotReadyError, match="penguins_raw does not exist: run data_pipeline"):
        data_steps.clean(PipelineSettings(penguins_db_url=sqlite_url), "r")


def test_validate_catches_a_table_that_is_not_what_clean_wrote(sqlite_url: str) -> None:
    settings = PipelineSettings(penguins_db_url=sqlite_url)
    run_all(settings, "r")
    engine = store.make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {CLEAN_TABLE} SET body_mass_g = 37.5 WHERE {ROW_KEY} = 1")
        conn.exec_driver_sql(f"DELETE FROM {CLEAN_TABLE} WHERE {ROW_KEY} = 2")
    engine.dispose()
    report = {"rows_in": 344, "rows_out": 333}
    with pytest.raises(data_steps.ValidationError, match=r"has 332 rows, the clean step wrote 333.*1 rows"):
        data_steps.validate(settings, report, "r")
    # As if another run had swapped the tables in meanwhile.
    with pytest.raises(
        data_steps.ValidationError, match=r"^344 rows of penguins_raw were loaded by another run.*332 rows"
    ):
        data_steps.validate(settings, {"rows_in": 344, "rows_out": 332}, "another-run")
