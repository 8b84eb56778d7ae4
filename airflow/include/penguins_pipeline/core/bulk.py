"""Moving DataFrames in and out of the data store in chunks, fast enough for millions of rows.

The generic paths are too slow (figures in INFORME_IMPLEMENTACION.md): PyMySQL spends its time per row in
Python, both in `executemany` and when fetching typed columns, and SQLAlchemy's per-row parameter handling
costs SQLite far more than its driver's work. So MySQL gets each chunk as a tab-separated file through
`LOAD DATA LOCAL INFILE` (the server must allow it: MySQL 8 needs `--local-infile=1`, MariaDB allows it by
default) and sends rows back folded into CSV text, a hundred rows per result row, parsed by pandas' C
reader; SQLite's C driver gets plain tuples both ways.
"""

import contextlib
import io
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import sqlalchemy as sa

from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.schema import ROW_KEY

# MySQL's LOAD DATA escapes (backslash first, or the others would be escaped twice).
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
# MySQL's NULL in both directions; a text that is exactly \N also reads back as NULL.
_NULL = "\\N"
# Reading MySQL: rows folded into one result row, and the most text one such row may hold.
LINES_PER_ROW = 100
GROUP_CONCAT_MAX_LEN = 16 * 1024 * 1024


class BulkLoadError(PermanentError, RuntimeError):
    """Values cannot pass the bulk path intact (MySQL would alter or cut them, with a mere warning)."""


def write_frames(
    engine: sa.Engine, table: sa.Table, frames: Iterable[pd.DataFrame], constants: Mapping[str, object]
) -> int:
    """Append every frame to `table` (committed chunk by chunk), each row completed with `constants`."""
    frames = (frame for frame in frames if not frame.empty)
    if engine.dialect.name == "mysql":
        return _load_data_local(engine, table, frames, constants)
    # Constants go through their column type once (e.g. a datetime into SQLite's text format); rows go
    # straight to the driver's executemany: SQLAlchemy's per-row parameter handling would cost far more.
    fixed = {name: _bound(table.c[name], value, engine.dialect) for name, value in constants.items()}
    quote = engine.dialect.identifier_preparer.quote
    rows = 0
    for frame in frames:
        columns = [*frame.columns, *fixed]
        insert = (
            f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) "
            f"VALUES ({', '.join(['?'] * len(columns))})"
        )
        # pandas takes na_value=None (NULL for the driver); pandas-stubs only lists non-None scalars.
        values = frame.assign(**fixed).to_numpy(dtype=object, na_value=None)  # type: ignore[arg-type]
        with engine.begin() as conn:
            conn.exec_driver_sql(insert, list(map(tuple, values)))
        rows += len(frame)
    return rows


def _bound(column: sa.Column, value: object, dialect: sa.Dialect) -> Any:
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process(value) if process else value


def read_frames(
    conn: sa.Connection, table: sa.Table, chunk_rows: int, columns: Sequence[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Every row of `table` (or its `columns`) in key order, typed after the table, page by page.

    A page is a key range of `chunk_rows` keys (at most that many rows): a short primary-key range scan,
    nothing to sort. Call it inside one transaction (`conn`) to read a consistent table even if another
    process swaps it meanwhile.
    """
    key = table.c[ROW_KEY]
    selected = sa.select(*[table.c[name] for name in columns or table.c.keys()])
    top = conn.execute(sa.select(sa.func.max(key))).scalar() or 0
    for start in range(0, top, chunk_rows):
        page = selected.where(key > start, key <= start + chunk_rows)
        frame = _read_mysql(conn, page) if conn.dialect.name == "mysql" else _read_driver_rows(conn, page)
        if not frame.empty:
            yield typed(frame, table).sort_values(ROW_KEY, ignore_index=True)


def prefetched(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """`chunks`, each fetched in a worker thread while the caller works on the one before.

    The fetch mostly waits for the database, without the GIL: reading and processing overlap.
    """
    with ThreadPoolExecutor(1) as fetcher:
        upcoming = fetcher.submit(next, chunks, None)
        while (chunk := upcoming.result()) is not None:
            upcoming = fetcher.submit(next, chunks, None)
            yield chunk


def typed(frame: pd.DataFrame, table: sa.Table) -> pd.DataFrame:
    """`frame` with the pandas dtype of `table`'s columns (a chunk of only NULLs has none of its own)."""
    return frame.astype({column.name: _pandas_dtype(column) for column in table.c if column.name in frame})


def _pandas_dtype(column: sa.Column) -> str:
    if isinstance(column.type, sa.String):
        return "str"
    if isinstance(column.type, sa.Float):
        return "float64"
    if isinstance(column.type, sa.Integer):
        return "Int64" if column.nullable else "int64"
    if isinstance(column.type, sa.DateTime):
        return "datetime64[us]"
    raise TypeError(f"no pandas dtype for column {column.name} of type {column.type}")


def _load_data_local(
    engine: sa.Engine, table: sa.Table, frames: Iterable[pd.DataFrame], constants: Mapping[str, object]
) -> int:
    """Each frame through its own LOAD DATA, committed; the next file is written while the server loads.

    Writing a file (pandas, this thread) and loading it (the server, another core) overlap: a worker
    thread sends the loads, waiting on the socket without holding the GIL. Two files take turns.
    """
    quote = engine.dialect.identifier_preparer.quote
    assignments = ", ".join(f"{quote(name)} = %s" for name in constants)
    connection = engine.raw_connection()

    def load(path: Path, columns: list[str]) -> None:
        with contextlib.closing(connection.cursor()) as cursor:
            cursor.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote(table.name)} CHARACTER SET utf8mb4"
                " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
                f" ({', '.join(quote(name) for name in columns)})"
                + (f" SET {assignments}" if constants else ""),
                (str(path), *constants.values()),
            )
            if cursor.warning_count:
                cursor.execute("SHOW WARNINGS LIMIT 5")
                details = "; ".join(str(message) for _, _, message in cursor.fetchall())
                raise BulkLoadError(f"loading into {table.name}, MySQL altered values: {details}")
        connection.commit()

    rows = 0
    loading: Future[None] | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="penguins-load-") as tmp, ThreadPoolExecutor(1) as sender:
            for number, frame in enumerate(frames):
                path = Path(tmp) / f"chunk-{number % 2}.tsv"
                _write_tsv(frame, path)
                if loading is not None:
                    loading.result()  # the other file is free again, and a failed load stops here
                loading = sender.submit(load, path, list(frame.columns))
                rows += len(frame)
            if loading is not None:
                loading.result()
    finally:
        connection.close()  # leaving the `with` waited for a load in flight
    return rows


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` as LOAD DATA reads it: NULL as \\N, text escaped, floats in round-trip precision.

    Each distinct value of a column is formatted once (measures and categories repeat a lot), then the rows
    are joined: much faster than `DataFrame.to_csv`, byte for byte the same text.
    """
    columns = [_tsv_column(frame[name]) for name in frame.columns]
    path.write_text("".join(f"{line}\n" for line in map("\t".join, zip(*columns, strict=True))), "utf-8")


def _tsv_column(column: pd.Series) -> np.ndarray:
    if column.dtype == "float64":
        values = column.to_numpy()
        # Distinct bit patterns, so that -0.0 stays -0.0; repr() is Python's shortest exact form.
        codes, distinct = pd.factorize(values.view(np.int64))
        text = np.array([repr(value) for value in distinct.view(np.float64).tolist()], dtype=object)[codes]
        text[np.isnan(values)] = _NULL
        return text
    codes, labels = pd.factorize(column)
    escaped = [str(value).translate(_TSV_ESCAPES) for value in labels.tolist()]
    return np.array([*escaped, _NULL], dtype=object)[codes]  # code -1 (missing) picks the NULL marker


def _read_driver_rows(conn: sa.Connection, page: sa.Select) -> pd.DataFrame:
    """Run `page` and build the frame from the driver's rows as they are (no per-row SQLAlchemy step)."""
    compiled = page.compile(dialect=conn.dialect)
    assert compiled.positiontup is not None, "SQLite (qmark paramstyle) lists its parameters in order"
    rows = conn.exec_driver_sql(
        compiled.string, tuple(compiled.params[name] for name in compiled.positiontup)
    )
    values = list(map(tuple, rows.fetchall()))  # plain tuples: pandas probes a Row's attributes, slowly
    return pd.DataFrame.from_records(values, columns=[column.name for column in page.selected_columns])


def _read_mysql(conn: sa.Connection, page: sa.Select) -> pd.DataFrame:
    """Run `page` with its rows folded into CSV text by the server, LINES_PER_ROW lines per result row:
    PyMySQL decodes one field per hundred rows instead of nine per row."""
    fields = []
    for column in page.selected_columns:
        value = column
        if isinstance(column.type, sa.String):
            value = sa.func.concat('"', sa.func.replace(column, '"', '""'), '"')
        fields.append(sa.func.ifnull(value, _NULL))
    line = sa.func.concat_ws(",", *fields)
    folded = page.with_only_columns(sa.func.group_concat(line.op("SEPARATOR")(sa.literal_column("'\\n'"))))
    conn.exec_driver_sql(f"SET SESSION group_concat_max_len = {GROUP_CONCAT_MAX_LEN}")
    texts = (
        conn.execute(folded.group_by(page.selected_columns[ROW_KEY].op("DIV")(LINES_PER_ROW))).scalars().all()
    )
    # MySQL cuts a GROUP_CONCAT at group_concat_max_len with a mere warning (1260).
    if conn.exec_driver_sql("SELECT @@warning_count").scalar():
        raise BulkLoadError(
            f"{LINES_PER_ROW} rows of {page.get_final_froms()[0]} are longer than"
            f" {GROUP_CONCAT_MAX_LEN} bytes: too long to read back"
        )
    names = [column.name for column in page.selected_columns]
    if not texts:
        return pd.DataFrame(columns=names)
    # Only the NULL marker is NULL ("" is an empty text, "NA" a text like any other); `typed` parses dates.
    dtypes = {
        # The page selects table columns (sa.Column), which the Select types as any column expression.
        column.name: "str"
        if isinstance(column.type, sa.String | sa.DateTime)
        else _pandas_dtype(cast("sa.Column[Any]", column))
        for column in page.selected_columns
    }
    text = io.StringIO("\n".join(texts))
    return pd.read_csv(text, names=names, header=None, dtype=dtypes, keep_default_na=False, na_values=[_NULL])
