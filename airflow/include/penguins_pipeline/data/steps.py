"""The steps of `data_pipeline`, one function per task, taking and returning only small values (XCom).

Rows travel through the data store, never through XCom: `ingest` streams the source into a staging copy of
penguins_raw, `store_raw` swaps it in, `clean` streams penguins_raw into a staging copy of penguins_clean,
`store_clean` swaps that in and `validate` checks what readers now see. Testable without Airflow.
"""

import logging
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from penguins_pipeline.core import store
from penguins_pipeline.core.bulk import prefetched, read_frames
from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.schema import (
    CATEGORIES,
    CLEAN_TABLE,
    DATA_COLUMNS,
    PHYSICAL_BOUNDS,
    RAW_TABLE,
    ROW_KEY,
)
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.data.clean import CleanReport, SeenRows, clean_chunk
from penguins_pipeline.data.sources import SourceError, numbered, open_source

log = logging.getLogger(__name__)


class ValidationError(PermanentError, RuntimeError):
    """The published penguins_clean does not hold what the clean step wrote."""


def ingest(settings: PipelineSettings, run_id: str) -> dict[str, Any]:
    """Stream the source into a fresh staging copy of penguins_raw, every value as it came."""
    engine = store.make_engine(settings.penguins_db_url)
    try:
        for target in (RAW_TABLE, CLEAN_TABLE):
            for name in store.drop_leftovers(engine, target):
                log.info("Dropped %s, left by an interrupted run", name)
        staging = store.staging_name(RAW_TABLE, run_id)
        chunks = numbered(open_source(settings.penguins_source, settings.chunk_rows), ROW_KEY)
        metadata = {"run_id": run_id, "loaded_at": datetime.now(UTC).replace(tzinfo=None)}
        rows = store.fill_staging(engine, store.raw_table(staging), chunks, metadata)
        if rows == 0:
            store.drop_quietly(engine, staging)
            raise SourceError(
                f"source {settings.penguins_source!r} gave no rows: the tables are left as they were"
            )
    finally:
        engine.dispose()
    log.info("Loaded %d rows from %s into %s", rows, settings.penguins_source, staging)
    return {"staging": staging, "rows": rows, "source": settings.penguins_source}


def store_raw(settings: PipelineSettings, ingested: dict[str, Any]) -> dict[str, Any]:
    """Swap the staging copy in as penguins_raw."""
    return _publish(settings, ingested, RAW_TABLE)


def clean(settings: PipelineSettings, run_id: str) -> dict[str, Any]:
    """Stream penguins_raw through `clean_chunk` into a fresh staging copy of penguins_clean."""
    engine = store.make_engine(settings.penguins_db_url)
    staging = store.staging_name(CLEAN_TABLE, run_id)
    report, seen = CleanReport(), SeenRows()
    try:
        # One read transaction: the whole of one penguins_raw, even if another run swapped it meanwhile.
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(RAW_TABLE):
                raise store.DataNotReadyError(f"{RAW_TABLE} does not exist: run data_pipeline from the start")
            pages = read_frames(
                conn, store.raw_table(RAW_TABLE), settings.chunk_rows, [ROW_KEY, *DATA_COLUMNS]
            )
            raw = prefetched(pages)  # the next page is read while this one is cleaned

            def cleaned() -> Iterator[pd.DataFrame]:
                for chunk in raw:
                    kept, dropped = clean_chunk(chunk, seen)
                    report.add(len(chunk), dropped, len(kept))
                    yield kept

            store.fill_staging(engine, store.clean_table(staging), cleaned(), {"run_id": run_id})
        if report.rows_out == 0:
            store.drop_quietly(engine, staging)
            raise SourceError(f"no usable row in {RAW_TABLE} ({report}): {CLEAN_TABLE} is left as it was")
    finally:
        engine.dispose()
    log.info("Cleaned %s: %s", RAW_TABLE, report)
    return {"staging": staging, **asdict(report)}


def store_clean(settings: PipelineSettings, cleaned: dict[str, Any]) -> dict[str, Any]:
    """Swap the staging copy in as penguins_clean."""
    return _publish(settings, cleaned, CLEAN_TABLE)


def validate(settings: PipelineSettings, cleaned: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Check that the published tables hold exactly what this run wrote, complete and within range."""
    raw, clean = store.raw_table(RAW_TABLE), store.clean_table(CLEAN_TABLE)
    out_of_range = sa.or_(
        *(clean.c[column].not_in(values) for column, values in CATEGORIES.items()),
        *(sa.not_(clean.c[column].between(low, high)) for column, (low, high) in PHYSICAL_BOUNDS.items()),
    )
    engine = store.make_engine(settings.penguins_db_url)
    try:
        with engine.connect() as conn:  # one transaction: both tables as one reader sees them
            raw_rows, foreign_rows = _count(conn, raw, raw.c.run_id != run_id)
            clean_rows, invalid_rows = _count(conn, clean, sa.or_(clean.c.run_id != run_id, out_of_range))
    finally:
        engine.dispose()
    problems = []
    if foreign_rows:
        problems.append(f"{foreign_rows} rows of {RAW_TABLE} were loaded by another run")
    if raw_rows != cleaned["rows_in"]:
        problems.append(f"{RAW_TABLE} has {raw_rows} rows, the clean step read {cleaned['rows_in']}")
    if clean_rows != cleaned["rows_out"]:
        problems.append(f"{CLEAN_TABLE} has {clean_rows} rows, the clean step wrote {cleaned['rows_out']}")
    if invalid_rows:
        problems.append(f"{invalid_rows} rows of {CLEAN_TABLE} are from another run or out of range")
    if problems:
        raise ValidationError("; ".join(problems))
    log.info("Validated: %s has %d rows, %s has %d rows", RAW_TABLE, raw_rows, CLEAN_TABLE, clean_rows)
    return {"raw_rows": raw_rows, "clean_rows": clean_rows, "run_id": run_id}


def _count(conn: sa.Connection, table: sa.Table, bad: sa.ColumnElement[bool]) -> tuple[int, int]:
    """Rows of `table`, and how many of them are `bad`, in one scan."""
    query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((bad, 1), else_=0)), 0))
    rows, bad_rows = conn.execute(query.select_from(table)).one()
    return int(rows), int(bad_rows)


def _publish(settings: PipelineSettings, staged: dict[str, Any], target: str) -> dict[str, Any]:
    engine = store.make_engine(settings.penguins_db_url)
    try:
        store.swap_in(engine, staged["staging"], target)
    finally:
        engine.dispose()
    log.info("Published %s as %s", staged["staging"], target)
    return {key: value for key, value in staged.items() if key != "staging"}
