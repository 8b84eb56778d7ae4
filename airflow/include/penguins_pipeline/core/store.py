"""The data store: engines, the two tables, staging tables swapped in atomically, and reading back.

Writers never touch a live table: they fill a staging table, then `swap_in` replaces the live one in one
atomic step (MySQL `RENAME TABLE a TO old, staging TO a`; SQLite DDL inside one transaction). A reader sees
the previous table or the new one, never a partial or empty one, and a failure leaves the previous one as it
was. Works on SQLite and MySQL/MariaDB (SQLAlchemy 2 + PyMySQL).
"""

import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from penguins_pipeline.core import bulk
from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.schema import (
    CATEGORIES,
    CLEAN_TABLE,
    DATA_COLUMNS,
    LABELLED_AT,
    LABELLED_TABLE,
    NUMERIC_FEATURES,
    ROW_KEY,
)

log = logging.getLogger(__name__)

READ_CHUNK_ROWS = 100_000
EXAMPLE_URL = "mysql+pymysql://user:password@host:3306/penguins"
# The bulk paths speak to these drivers (pysqlite's qmark parameters, PyMySQL's LOAD DATA and warnings).
SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "mysql+pymysql")
_TEXT_LENGTH = max(len(value) for values in CATEGORIES.values() for value in values)
MYSQL_TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


class DataStoreError(RuntimeError):
    """The data store cannot be reached: another attempt may succeed."""


class StoreURLError(PermanentError, ValueError):
    """PENGUINS_DB_URL does not name a supported data store: retrying will not help."""


class DataNotReadyError(PermanentError, RuntimeError):
    """The table a step needs is missing or empty: `data_pipeline` has not run (successfully) yet."""


def describe(url: str | sa.URL) -> str:
    """Where the data store is, for error messages: host and URL, never the password."""
    parsed = sa.make_url(url)
    where = parsed.database if parsed.get_backend_name() == "sqlite" else f"{parsed.host}:{parsed.port or ''}"
    return f"{where} (PENGUINS_DB_URL={parsed.render_as_string(hide_password=True)})"


def make_engine(url: str) -> sa.Engine:
    """An engine for `url` that has just connected once, so an unreachable store fails here, readably."""
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # e.g. a port that is not a number
        # Not echoed: a URL that does not parse may still hold a password.
        raise StoreURLError(f"PENGUINS_DB_URL is not a SQLAlchemy URL; e.g. {EXAMPLE_URL}") from None
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise StoreURLError(
            f"PENGUINS_DB_URL must name SQLite or MySQL/MariaDB through PyMySQL, e.g. {EXAMPLE_URL}; "
            f"not {parsed.drivername} at {describe(parsed)}"
        )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    else:
        engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args={"local_infile": True})
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as err:
        engine.dispose()
        raise DataStoreError(f"cannot reach the data store at {describe(parsed)}: {err.orig}") from err
    return engine


def _sqlite_on_connect(dbapi_connection: object, _record: object) -> None:
    """Let SQLAlchemy open every transaction (pysqlite won't for DDL) and let readers run during writes."""
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def raw_table(name: str) -> sa.Table:
    """`penguins_raw` (or its staging copy): every source value as it came, NULL where missing."""
    text: dict[str, sa.types.TypeEngine[Any]] = {column: sa.Text() for column in ("species", "island", "sex")}
    return sa.Table(
        name,
        sa.MetaData(),
        _key_column("1-based position of the row in the source"),
        *(
            sa.Column(column, text.get(column, sa.BigInteger() if column == "year" else sa.Double()))
            for column in DATA_COLUMNS
        ),
        sa.Column("run_id", sa.String(250), nullable=False, comment="Airflow run that loaded the row"),
        sa.Column("loaded_at", sa.DateTime(), nullable=False, comment="UTC time of the load"),
        **MYSQL_TABLE_OPTIONS,
    )


def clean_table(name: str) -> sa.Table:
    """`penguins_clean` (or its staging copy): the rows usable for training, typed and complete."""
    return sa.Table(
        name,
        sa.MetaData(),
        _key_column("the penguins_raw row this penguin comes from"),
        *(
            sa.Column(
                column,
                sa.Double() if column in NUMERIC_FEATURES else sa.String(_TEXT_LENGTH),
                nullable=False,
            )
            for column in DATA_COLUMNS
            if column != "year"
        ),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.String(250), nullable=False, comment="Airflow run that cleaned the row"),
        **MYSQL_TABLE_OPTIONS,
    )


def _key_column(comment: str) -> sa.Column:
    # On SQLite an INTEGER PRIMARY KEY is the rowid itself: no second index to maintain.
    key_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    return sa.Column(ROW_KEY, key_type, primary_key=True, autoincrement=False, comment=comment)


def staging_name(target: str, run_id: str) -> str:
    """The staging table of `target` for one run: the same on every retry of the run, unique across runs."""
    return f"{target}__staging_{hashlib.sha1(run_id.encode()).hexdigest()[:12]}"


def fill_staging(
    engine: sa.Engine, table: sa.Table, frames: Iterable[pd.DataFrame], constants: dict[str, object]
) -> int:
    """Create `table` afresh and stream `frames` into it; on any failure drop it: nothing half-written."""
    table.drop(engine, checkfirst=True)
    table.create(engine)
    try:
        return bulk.write_frames(engine, table, frames, constants)
    except BaseException:
        drop_quietly(engine, table.name)
        raise


def swap_in(engine: sa.Engine, staging: str, target: str) -> None:
    """Replace `target` by `staging` in one atomic step; the previous `target` is dropped afterwards."""
    quote = engine.dialect.identifier_preparer.quote
    old = staging.replace("__staging_", "__old_")
    with engine.begin() as conn:
        if not sa.inspect(conn).has_table(staging):
            raise DataNotReadyError(f"staging table {staging} is gone: run data_pipeline again")
        exists = sa.inspect(conn).has_table(target)
        if engine.dialect.name == "mysql":
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(old)}")
            renames = [f"{quote(target)} TO {quote(old)}"] if exists else []
            renames.append(f"{quote(staging)} TO {quote(target)}")
            conn.exec_driver_sql(f"RENAME TABLE {', '.join(renames)}")
        else:
            if exists:
                conn.exec_driver_sql(f"DROP TABLE {quote(target)}")
            conn.exec_driver_sql(f"ALTER TABLE {quote(staging)} RENAME TO {quote(target)}")
    drop_quietly(engine, old)


def drop_leftovers(engine: sa.Engine, target: str) -> list[str]:
    """Drop the staging and old copies of `target` that interrupted runs left (DAG runs never overlap)."""
    leftovers = [
        name
        for name in sa.inspect(engine).get_table_names()
        if name.startswith((f"{target}__staging_", f"{target}__old_"))
    ]
    for name in leftovers:
        drop_quietly(engine, name)
    return leftovers


def drop_quietly(engine: sa.Engine, name: str) -> None:
    """Drop table `name` if it exists; a failure here is logged, never hides the error being handled."""
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {engine.dialect.identifier_preparer.quote(name)}")
    except sa.exc.SQLAlchemyError as err:
        log.warning("could not drop table %s: %s", name, err)


def read_clean(url: str) -> pd.DataFrame:
    """The whole `penguins_clean` table: key, DATA_COLUMNS, float64 measures, str categoricals, Int64 year."""
    engine = make_engine(url)
    try:
        table = clean_table(CLEAN_TABLE)
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(CLEAN_TABLE):
                where = describe(url)
                raise DataNotReadyError(f"{CLEAN_TABLE} does not exist in {where}: run data_pipeline first")
            frames = list(bulk.read_frames(conn, table, READ_CHUNK_ROWS, [ROW_KEY, *DATA_COLUMNS]))
    finally:
        engine.dispose()
    if not frames:
        raise DataNotReadyError(f"{CLEAN_TABLE} is empty in {describe(url)}: run data_pipeline first")
    return pd.concat(frames, ignore_index=True)


# What training reads of `penguins_labelled`: the penguin the model saw, its true species, and the order.
LABELLED_READ = [*DATA_COLUMNS, LABELLED_AT, "feedback_id", "prediction_id"]


def read_labelled(url: str) -> pd.DataFrame:
    """The labelled live penguins (`penguins_labelled`, LABELLED_READ columns); no rows while
    monitor_pipeline has not built the table, which is not an error: there is simply no feedback yet."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(LABELLED_TABLE):
                log.info("%s does not exist in %s: no live labelled rows", LABELLED_TABLE, describe(url))
                return pd.DataFrame(columns=LABELLED_READ)
            table = sa.Table(LABELLED_TABLE, sa.MetaData(), autoload_with=conn)
            missing = [name for name in LABELLED_READ if name not in table.c]
            if missing:
                raise DataNotReadyError(
                    f"{LABELLED_TABLE} in {describe(url)} lacks columns {missing}: "
                    "run monitor_pipeline to rebuild it"
                )
            rows = pd.read_sql(sa.select(*(table.c[name] for name in LABELLED_READ)), conn)
    finally:
        engine.dispose()
    return rows.astype({name: "float64" for name in NUMERIC_FEATURES}).astype({"year": "Int64"})
