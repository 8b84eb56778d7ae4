"""The data store on SQLite and on a real MariaDB: exact round trips, atomic swaps, readable failures."""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from penguins_pipeline.core import bulk, store
from penguins_pipeline.core.bulk import BulkLoadError, read_frames
from penguins_pipeline.core.schema import CLEAN_TABLE, DATA_COLUMNS, RAW_TABLE, ROW_KEY
from penguins_pipeline.data.sources import DTYPES, numbered, open_source

RUN = "manual__2026-01-01T00:00:00+00:00"
KeepReading = Callable[..., AbstractContextManager[list[int]]]


def raw_frame() -> pd.DataFrame:
    """Values a CSV may bring: text that breaks naive TSV/CSV, NULLs everywhere, floats needing 17 digits."""
    frame = pd.DataFrame(
        {
            "species": ["Adelie", ' tab\there "quoted" ', "new\nline\\N", None, "", "NULL"],
            "island": ["Dream", "back\\slash", "cr\rlf", "Biscoe", None, "ünïcødé 🐧"],
            "bill_length_mm": [39.1, 0.1 + 0.2, np.nan, 1e-300, -0.0, 2.0**53 + 2],
            "bill_depth_mm": [18.7, np.nan, 1.7976931348623157e308, 5e-324, 18.0, 17.3],
            "flipper_length_mm": [181.0, 200.0, np.nan, 190.0, 191.0, 192.0],
            "body_mass_g": [3750.0, np.nan, 3800.0, 4000.0, 4100.0, 4200.0],
            "sex": ["male", "Female", None, "  male", "\\", "\x00nul"],
            "year": [2007, None, 2009, 2**40, -1, 0],
        }
    ).astype(DTYPES)
    return next(numbered([frame], ROW_KEY))


def read_table(url: str, table: sa.Table, columns: list[str]) -> pd.DataFrame:
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return pd.concat(read_frames(conn, table, 2, columns), ignore_index=True)
    finally:
        engine.dispose()


def publish(url: str, target: str, frames: list[pd.DataFrame], run_id: str = RUN) -> int:
    engine = store.make_engine(url)
    try:
        staging = store.staging_name(target, run_id)
        make_table = store.raw_table if target == RAW_TABLE else store.clean_table
        constants = (
            {"run_id": run_id}
            if target == CLEAN_TABLE
            else {"run_id": run_id, "loaded_at": datetime(2026, 1, 1)}
        )
        rows = store.fill_staging(engine, make_table(staging), frames, constants)
        store.swap_in(engine, staging, target)
        return rows
    finally:
        engine.dispose()


def real_clean_frames(chunk_rows: int = 100) -> list[pd.DataFrame]:
    penguins = pd.concat(numbered(open_source("palmerpenguins", 1), ROW_KEY)).dropna(
        subset=["sex", "body_mass_g"]
    )
    return [penguins.iloc[start : start + chunk_rows] for start in range(0, len(penguins), chunk_rows)]


def test_raw_values_come_back_exactly_as_written(db_url: str) -> None:
    frame = raw_frame()
    assert publish(db_url, RAW_TABLE, [frame.iloc[:4], frame.iloc[4:]]) == 6
    back = read_table(db_url, store.raw_table(RAW_TABLE), [ROW_KEY, *DATA_COLUMNS, "run_id", "loaded_at"])
    pd.testing.assert_frame_equal(back[[ROW_KEY, *DATA_COLUMNS]], frame)
    assert set(back["run_id"]) == {RUN}
    assert set(back["loaded_at"]) == {pd.Timestamp("2026-01-01")}


def test_read_clean_gives_the_typed_table(db_url: str) -> None:
    frames = real_clean_frames()
    publish(db_url, CLEAN_TABLE, frames)
    clean = store.read_clean(db_url)
    pd.testing.assert_frame_equal(clean, pd.concat(frames, ignore_index=True))
    assert list(clean.columns) == [ROW_KEY, *DATA_COLUMNS]
    assert clean["bill_length_mm"].dtype == "float64" and clean["island"].dtype == "str"


def test_read_clean_says_to_run_data_pipeline_when_missing_or_empty(db_url: str) -> None:
    with pytest.raises(
        store.DataNotReadyError, match=r"penguins_clean does not exist.*run data_pipeline first"
    ):
        store.read_clean(db_url)
    engine = store.make_engine(db_url)
    store.clean_table(CLEAN_TABLE).create(engine)
    engine.dispose()
    with pytest.raises(store.DataNotReadyError, match=r"penguins_clean is empty.*run data_pipeline first"):
        store.read_clean(db_url)
    assert issubclass(store.DataNotReadyError, RuntimeError)


def test_an_unreachable_store_is_named_without_its_password() -> None:
    url = "mysql+pymysql://penguins:s3cr3t-pw@127.0.0.1:1/penguins"
    with pytest.raises(store.DataStoreError) as failure:
        store.make_engine(url)
    message = str(failure.value)
    assert (
        "127.0.0.1:1" in message
        and "PENGUINS_DB_URL=mysql+pymysql://penguins:***@127.0.0.1:1/penguins" in message
    )
    assert "s3cr3t-pw" not in message


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql+pymysql://penguins:s3cr3t-pw@:not-a-port/x",
            r"^PENGUINS_DB_URL is not a SQLAlchemy URL; e\.g\. ",
        ),
        (
            "postgresql://penguins:s3cr3t-pw@127.0.0.1/x",
            r"SQLite or MySQL/MariaDB through PyMySQL.*not postgresql",
        ),
        ("mysql://penguins:s3cr3t-pw@127.0.0.1/x", r"through PyMySQL.*not mysql at 127\.0\.0\.1"),
    ],
)
def test_a_url_the_pipeline_cannot_use_is_refused_without_its_password(url: str, message: str) -> None:
    with pytest.raises(store.StoreURLError, match=message) as failure:
        store.make_engine(url)
    assert "s3cr3t-pw" not in str(failure.value)


def test_a_write_failing_midway_leaves_the_live_table_and_no_staging(db_url: str) -> None:
    frames = real_clean_frames()
    publish(db_url, CLEAN_TABLE, frames)

    def failing_after_two_chunks() -> Iterator[pd.DataFrame]:
        yield from frames[:2]
        raise OSError("the source broke")

    engine = store.make_engine(db_url)
    staging = store.staging_name(CLEAN_TABLE, "run-2")
    with pytest.raises(OSError, match="the source broke"):
        store.fill_staging(
            engine, store.clean_table(staging), failing_after_two_chunks(), {"run_id": "run-2"}
        )
    assert sa.inspect(engine).get_table_names() == [CLEAN_TABLE]
    engine.dispose()
    pd.testing.assert_frame_equal(store.read_clean(db_url), pd.concat(frames, ignore_index=True))


def test_values_the_database_would_alter_fail_the_load(mariadb_url: str) -> None:
    # Under LOAD DATA LOCAL, MySQL only warns (and truncates): the warning must become an error.
    frame = real_clean_frames()[0].copy()
    frame.loc[frame.index[3], "species"] = "Adelie" * 10
    with pytest.raises(BulkLoadError, match="Data truncated for column 'species'"):
        publish(mariadb_url, CLEAN_TABLE, [frame])
    engine = store.make_engine(mariadb_url)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()


def test_leftovers_of_interrupted_runs_are_dropped(db_url: str) -> None:
    publish(db_url, CLEAN_TABLE, real_clean_frames())
    engine = store.make_engine(db_url)
    for run_id in ("a", "b"):
        store.clean_table(store.staging_name(CLEAN_TABLE, run_id)).create(engine)
    store.clean_table(f"{CLEAN_TABLE}__old_0123456789ab").create(engine)
    assert len(store.drop_leftovers(engine, CLEAN_TABLE)) == 3
    assert sa.inspect(engine).get_table_names() == [CLEAN_TABLE]
    engine.dispose()


def test_readers_see_the_old_or_the_new_table_never_a_partial_one(
    db_url: str, keep_reading: KeepReading
) -> None:
    small, large = real_clean_frames()[:1], real_clean_frames(chunk_rows=50)
    publish(db_url, CLEAN_TABLE, small)
    with keep_reading(lambda: len(store.read_clean(db_url)), pause=0) as seen:
        for swap in range(6):
            publish(db_url, CLEAN_TABLE, large if swap % 2 == 0 else small, run_id=f"swap-{swap}")
    assert seen and set(seen) <= {sum(map(len, small)), sum(map(len, large))}


def test_rows_too_long_to_read_back_fail_instead_of_coming_back_cut(
    mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MySQL cuts a GROUP_CONCAT at group_concat_max_len with a mere warning: the reader must notice.
    publish(mariadb_url, CLEAN_TABLE, real_clean_frames())
    monkeypatch.setattr(bulk, "GROUP_CONCAT_MAX_LEN", 1000)
    with pytest.raises(BulkLoadError, match="longer than 1000 bytes: too long to read back"):
        store.read_clean(mariadb_url)


def test_prefetched_keeps_the_order_and_the_errors() -> None:
    def pages() -> Iterator[pd.DataFrame]:
        yield pd.DataFrame({"page": [1]})
        yield pd.DataFrame({"page": [2]})
        raise OSError("page 3 is unreadable")

    seen = []
    with pytest.raises(OSError, match="page 3 is unreadable"):
        for page in bulk.prefetched(pages()):
            seen.append(int(page.loc[0, "page"]))
    assert seen == [1, 2]
