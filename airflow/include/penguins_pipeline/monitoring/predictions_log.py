"""The API's logs (PREDICTIONS_DIR, JSON Lines): predictions into `penguins_predictions`, true species (the
feedback log, `POST /feedback`) into `penguins_feedback`, by one loader: a `LogKind` names a log's files,
tables and record parser, everything else below is the same for both.

The format is fixed by the API's writers: one file per API worker and log, `<prefix><UTC start>-<pid>.jsonl`
(penguins_contract.LOG_FILE_PATTERN), appended whole lines only; a last line without its newline is a write
still under way (or cut by a crash) and is not a record yet. The loader remembers, per file, how many bytes
of whole lines it has consumed (`penguins_prediction_files`, `penguins_feedback_files`); the rows of a chunk
and the file's new offset are committed in one transaction, so a rerun or a crash at any point neither
duplicates nor loses a record. Two loaders at once (`make monitor` beside a scheduled run) cannot duplicate
either: the key, each record's `prediction_id` (`feedback_id` for a label), refuses the second insert, that
transaction rolls back and its task's retry starts from the committed offset.
Files are never changed; retention deletes old rows, and old fully loaded files only where the folder is
writable. A folder that is missing (an unmounted volume) changes no bookkeeping: it is an error once files
were loaded from it.

Records written before the API made prediction ids have none: each is keyed `<request_id>#<item>`, the key
rows had then (`legacy_prediction_id`), and a table of that time is migrated to the same ids, so an upgrade
neither loses nor reloads a record.
"""

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from penguins_contract import (
    FEEDBACK_FIELDS,
    FEEDBACK_FILE_PREFIX,
    FEEDBACK_KEY,
    LOG_FILE_PATTERN,
    PREDICTION_ENDPOINTS,
    PREDICTION_FIELDS,
    PREDICTION_ID_PATTERN,
    PREDICTION_KEY,
    PREDICTIONS_FILE_PREFIX,
)
from penguins_pipeline.core.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from penguins_pipeline.core.store import MYSQL_TABLE_OPTIONS

log = logging.getLogger(__name__)

PREDICTIONS_TABLE = "penguins_predictions"
FILES_TABLE = "penguins_prediction_files"
FEEDBACK_TABLE = "penguins_feedback"
FEEDBACK_FILES_TABLE = "penguins_feedback_files"
# Bytes read (and committed) at a time: bounds the memory of a load whatever the size of a file.
CHUNK_BYTES = 4 * 1024 * 1024
_SHORT_TEXT = 128
# A key: a prediction id, or the legacy `<request_id>#<item>` of a record written before ids (item < 2**31).
_KEY_TEXT = _SHORT_TEXT + len("#2147483647")
# MySQL's DATETIME drops the fraction unless asked for one: keep the log's microseconds.
_TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def predictions_table(metadata: sa.MetaData | None = None) -> sa.Table:
    """One row per answered penguin, the record's fields (the contract's PREDICTION_FIELDS) then its file;
    the key, the server-made `prediction_id`, makes a second insert of a record fail."""
    return sa.Table(
        PREDICTIONS_TABLE,
        metadata or sa.MetaData(),
        sa.Column(PREDICTION_KEY, sa.String(_KEY_TEXT), primary_key=True),
        sa.Column(
            "request_id",
            sa.String(_SHORT_TEXT),
            nullable=False,
            index=True,
            comment="X-Request-ID: the client's (may repeat) or one the API made",
        ),
        sa.Column("item", sa.Integer(), nullable=False, comment="position in the request"),
        sa.Column("time", _TIME, nullable=False, index=True, comment="UTC answer time"),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(_SHORT_TEXT), nullable=False),
        *(sa.Column(name, sa.Double(), nullable=False) for name in NUMERIC_FEATURES),
        *(sa.Column(name, sa.String(_SHORT_TEXT), nullable=False) for name in CATEGORICAL_FEATURES),
        sa.Column("species", sa.String(_SHORT_TEXT), nullable=False),
        sa.Column("probabilities", sa.Text(), nullable=False, comment="JSON: species -> probability"),
        sa.Column("source_file", sa.String(255), nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )


def feedback_table(metadata: sa.MetaData | None = None) -> sa.Table:
    """One row per label (the contract's FEEDBACK_FIELDS, then its file), kept whether or not its prediction
    is loaded: a label for an unknown id is reported as unmatched, never dropped."""
    return sa.Table(
        FEEDBACK_TABLE,
        metadata or sa.MetaData(),
        sa.Column(FEEDBACK_KEY, sa.String(_SHORT_TEXT), primary_key=True),
        sa.Column(PREDICTION_KEY, sa.String(_KEY_TEXT), nullable=False, index=True),
        sa.Column("species", sa.String(_SHORT_TEXT), nullable=False, comment="the TRUE species"),
        sa.Column("time", _TIME, nullable=False, index=True, comment="UTC time the label came (labelled_at)"),
        sa.Column("request_id", sa.String(_SHORT_TEXT), nullable=False),
        sa.Column("source_file", sa.String(255), nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )


def files_table(metadata: sa.MetaData | None = None, name: str = FILES_TABLE) -> sa.Table:
    """Per log file: how many bytes of whole lines are loaded, and what they held."""
    return sa.Table(
        name,
        metadata or sa.MetaData(),
        sa.Column("file_name", sa.String(255), primary_key=True),
        sa.Column("loaded_bytes", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False, comment="malformed or duplicate lines"),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )


class ConcurrentLoadError(RuntimeError):
    """Another loader committed the same lines first: this chunk was rolled back, a retry goes on."""


class MissingFolderError(RuntimeError):
    """PREDICTIONS_DIR is gone although files were loaded from it: an unmounted volume, not an empty log."""


class BadRecord(ValueError):
    """A line that is not a prediction record; the message names the field."""


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value or len(value) > _SHORT_TEXT:
        raise BadRecord(
            f"{name} must be a non-empty string of at most {_SHORT_TEXT} characters, not {value!r}"
        )
    return value


def _number(raw: dict[str, Any], name: str) -> float:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRecord(f"{name} must be a finite number, not {value!r}")
    return float(value)


def legacy_prediction_id(request_id: str, item: int) -> str:
    """The key of a record written before the API made prediction ids: its key of that time, as one string
    (unique: item, after the last "#", is a number). Never a prediction id, which is hex."""
    return f"{request_id}#{item}"


def _utc_time(raw: dict[str, Any]) -> datetime:
    """The record's `time`, naive UTC as the tables hold it."""
    when = _text(raw, "time")
    try:
        time = datetime.fromisoformat(when)
    except ValueError:
        raise BadRecord(f"time must be an ISO 8601 UTC time, not {when!r}") from None
    if time.utcoffset() != timedelta(0):
        raise BadRecord(f"time must be in UTC (…Z), not {when!r}")
    return time.astimezone(UTC).replace(tzinfo=None)


def _json_object(line: bytes, fields: Iterable[str]) -> dict[str, Any]:
    """The line's JSON object, every one of `fields` present, or BadRecord saying what is wrong."""
    try:
        raw = json.loads(line)
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRecord(f"not JSON: {err}") from None
    if not isinstance(raw, dict):
        raise BadRecord(f"not a JSON object but {type(raw).__name__}")
    missing = [name for name in fields if name not in raw]
    if missing:
        raise BadRecord(f"missing field(s): {', '.join(missing)}")
    return raw


def _prediction_id(raw: dict[str, Any]) -> str:
    prediction_id = raw[PREDICTION_KEY]
    if not isinstance(prediction_id, str) or not PREDICTION_ID_PATTERN.fullmatch(prediction_id):
        raise BadRecord(f"prediction_id must be 32 lowercase hex digits, not {prediction_id!r}")
    return prediction_id


def parse_record(line: bytes) -> dict[str, Any]:
    """One line as a row of `penguins_predictions`, or BadRecord naming the first field that is wrong."""
    raw = _json_object(line, (name for name in PREDICTION_FIELDS if name != PREDICTION_KEY))
    item = raw["item"]
    if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < 2**31:
        raise BadRecord(f"item must be a non-negative integer, not {item!r}")
    time = _utc_time(raw)
    endpoint = _text(raw, "endpoint")
    if endpoint not in PREDICTION_ENDPOINTS:
        raise BadRecord(f"endpoint must be one of {', '.join(PREDICTION_ENDPOINTS)}, not {endpoint!r}")
    probabilities = raw.get("probabilities")
    if not isinstance(probabilities, dict) or not all(
        isinstance(p, int | float) and not isinstance(p, bool) for p in probabilities.values()
    ):
        raise BadRecord(f"probabilities must be an object of species -> number, not {probabilities!r}")
    request_id = _text(raw, "request_id")
    if PREDICTION_KEY not in raw:
        prediction_id = legacy_prediction_id(request_id, item)
    else:
        prediction_id = _prediction_id(raw)
    return {
        PREDICTION_KEY: prediction_id,
        "request_id": request_id,
        "item": item,
        "time": time,
        "endpoint": endpoint,
        "model_version": _text(raw, "model_version"),
        **{name: _number(raw, name) for name in NUMERIC_FEATURES},
        **{name: _text(raw, name) for name in CATEGORICAL_FEATURES},
        "species": _text(raw, "species"),
        "probabilities": json.dumps(probabilities, sort_keys=True),
    }


def parse_feedback(line: bytes) -> dict[str, Any]:
    """One line of the feedback log as a row of `penguins_feedback`, or BadRecord naming the field. The
    species is any non-empty name here: the API checked it against the model that answered."""
    raw = _json_object(line, FEEDBACK_FIELDS)
    return {
        FEEDBACK_KEY: _text(raw, FEEDBACK_KEY),
        PREDICTION_KEY: _prediction_id(raw),
        "species": _text(raw, "species"),
        "time": _utc_time(raw),
        "request_id": _text(raw, "request_id"),
    }


@dataclass(frozen=True)
class LogKind:
    """One of the API's logs: its files' prefix, its tables, its key, and how a line becomes a row."""

    prefix: str
    table: Callable[[sa.MetaData | None], sa.Table]
    files_table: str
    key: str
    parse: Callable[[bytes], dict[str, Any]]

    def owns(self, path: Path) -> bool:
        """Whether `path` is a file of this log."""
        name = path.name
        return bool(LOG_FILE_PATTERN.fullmatch(name)) and name.startswith(self.prefix) and path.is_file()


PREDICTIONS = LogKind(PREDICTIONS_FILE_PREFIX, predictions_table, FILES_TABLE, PREDICTION_KEY, parse_record)
FEEDBACK = LogKind(FEEDBACK_FILE_PREFIX, feedback_table, FEEDBACK_FILES_TABLE, FEEDBACK_KEY, parse_feedback)


@dataclass
class Chunk:
    """The whole lines of one read: parsed records, the bad lines' count, where the next read starts."""

    records: list[dict[str, Any]]
    skipped: int
    end: int


def read_chunks(
    path: Path,
    offset: int,
    chunk_bytes: int = CHUNK_BYTES,
    parse: Callable[[bytes], dict[str, Any]] = parse_record,
) -> Iterator[Chunk]:
    """Whole lines of `path` from byte `offset` on, `chunk_bytes` at a time; a last line without its newline
    is left for a later read. A malformed line is logged (file, byte offset, reason) and counted."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        pending = b""
        while block := handle.read(chunk_bytes):
            data = pending + block
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            if cut == 0:
                continue
            records, skipped, position = [], 0, offset
            for line in data[:cut].splitlines(keepends=True):
                try:
                    record = parse(line)
                except BadRecord as err:
                    skipped += 1
                    log.warning("Skipped the line at byte %d of %s: %s", position, path.name, err)
                else:
                    records.append({**record, "source_file": path.name})
                position += len(line)
            offset += cut
            yield Chunk(records, skipped, offset)
        if pending:
            log.info("%s ends in %d bytes without a newline: left for the next run", path.name, len(pending))


@dataclass
class LoadReport:
    """What one load did (the `load` task's XCom): waiting bytes are unfinished last lines."""

    files: int = 0
    records: int = 0
    skipped: int = 0
    duplicates: int = 0
    waiting_bytes: int = 0


def create_tables(engine: sa.Engine, kind: LogKind = PREDICTIONS) -> tuple[sa.Table, sa.Table]:
    """The log's two tables, made if missing; a predictions table of before prediction ids is migrated
    first."""
    if kind == PREDICTIONS:
        _migrate_to_prediction_ids(engine)
    metadata = sa.MetaData()
    rows, files = kind.table(metadata), files_table(metadata, kind.files_table)
    metadata.create_all(engine, checkfirst=True)
    return rows, files


# Where a predictions table keyed (request_id, item) waits while its rows are copied into today's table.
_BEFORE_IDS = f"{PREDICTIONS_TABLE}_before_ids"


def _migrate_to_prediction_ids(engine: sa.Engine) -> None:
    """Give a table keyed `(request_id, item)` (before the API made prediction ids) today's key, every row
    kept and keyed by `legacy_prediction_id`, as its lines would be if loaded again.

    The old table is renamed aside, copied into a new one with one INSERT ... SELECT, then dropped. DDL
    commits on its own in MySQL, so each step may be cut short by a crash: while the renamed table exists,
    the copy is redone from the start.
    """
    tables = set(sa.inspect(engine).get_table_names())
    if _BEFORE_IDS not in tables:
        if PREDICTIONS_TABLE not in tables:
            return
        columns = {column["name"] for column in sa.inspect(engine).get_columns(PREDICTIONS_TABLE)}
        if PREDICTION_KEY in columns:
            return
        log.warning(
            "%s is keyed (request_id, item), from before prediction ids: migrating it (every row kept, "
            "keyed <request_id>#<item>)",
            PREDICTIONS_TABLE,
        )
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {PREDICTIONS_TABLE} RENAME TO {_BEFORE_IDS}"))
    with engine.begin() as conn:
        old = sa.Table(_BEFORE_IDS, sa.MetaData(), autoload_with=conn)
        for index in old.indexes:  # SQLite's index names are global: today's table needs them
            index.drop(conn)
        new = predictions_table()
        new.drop(conn, checkfirst=True)  # a copy cut short
        new.create(conn)
        names = [column.name for column in new.columns if column.name != PREDICTION_KEY]
        legacy_id = old.c.request_id + "#" + sa.cast(old.c.item, sa.String)  # legacy_prediction_id in SQL
        copied = conn.execute(
            new.insert().from_select(
                [PREDICTION_KEY, *names], sa.select(legacy_id, *(old.c[n] for n in names))
            )
        )
        old.drop(conn)
    log.warning("Migrated %s to prediction ids: %d rows kept", PREDICTIONS_TABLE, copied.rowcount)


def log_files(folder: Path, kind: LogKind = PREDICTIONS) -> list[Path]:
    """The files of the log `kind` in `folder`, oldest first (their names start with the UTC start time)."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if kind.owns(path))


def load_folder(
    engine: sa.Engine, folder: Path, chunk_bytes: int = CHUNK_BYTES, kind: LogKind = PREDICTIONS
) -> LoadReport:
    """Load every whole line not loaded yet from the files of the log `kind` in `folder`."""
    rows, files = create_tables(engine, kind)
    with engine.connect() as conn:
        loaded = {
            name: size for name, size in conn.execute(sa.select(files.c.file_name, files.c.loaded_bytes))
        }
    report = LoadReport()
    if not folder.is_dir():
        if loaded:
            raise MissingFolderError(
                f"PREDICTIONS_DIR {folder} does not exist, but {len(loaded)} log files were loaded from it "
                "before: is its volume mounted? Nothing was loaded and no file's offset was forgotten. Mount "
                "it again (or create the folder if the log was deleted on purpose) and rerun."
            )
        log.warning("PREDICTIONS_DIR %s does not exist: nothing was logged yet", folder)
        return report
    for path in log_files(folder, kind):
        offset = loaded.get(path.name, 0)
        size = path.stat().st_size
        if size < offset:
            log.warning("%s is shorter (%d bytes) than what was loaded (%d): left alone", path, size, offset)
            continue
        report.files += 1
        for chunk in read_chunks(path, offset, chunk_bytes, kind.parse):
            added, duplicates = _commit(engine, rows, files, kind.key, path.name, chunk, offset == 0)
            offset = chunk.end
            report.records += added
            report.skipped += chunk.skipped
            report.duplicates += duplicates
        report.waiting_bytes += max(path.stat().st_size - offset, 0)
    log.info(
        "Loaded %d records from %d %s files (%d malformed lines skipped, %d duplicates ignored, %d bytes of "
        "unfinished lines left for the next run)",
        report.records,
        report.files,
        kind.prefix.rstrip("-"),
        report.skipped,
        report.duplicates,
        report.waiting_bytes,
    )
    return report


def _commit(
    engine: sa.Engine, rows: sa.Table, files: sa.Table, key: str, name: str, chunk: Chunk, first: bool
) -> tuple[int, int]:
    """Insert a chunk's new records and move the file's offset, in one transaction; (inserted, duplicates)."""
    try:
        with engine.begin() as conn:
            fresh = _new_records(conn, rows.c[key], chunk.records)
            if fresh:
                conn.execute(rows.insert(), fresh)
            duplicates = len(chunk.records) - len(fresh)
            counts = {"loaded_bytes": chunk.end, "updated_at": datetime.now(UTC).replace(tzinfo=None)}
            if first:
                row = {"file_name": name, "records": len(fresh), "skipped": chunk.skipped + duplicates}
                conn.execute(files.insert(), {**row, **counts})
            else:
                conn.execute(
                    files.update()
                    .where(files.c.file_name == name)
                    .values(
                        records=files.c.records + len(fresh),
                        skipped=files.c.skipped + chunk.skipped + duplicates,
                        **counts,
                    )
                )
    except sa.exc.IntegrityError as err:
        raise ConcurrentLoadError(
            f"another loader committed lines of {name} meanwhile (a second monitor run at the same time?): "
            "this chunk was rolled back; a retry goes on from the committed offset"
        ) from err
    if duplicates:
        log.warning("%s: %d records whose %s was already loaded were skipped", name, duplicates, key)
    return len(fresh), duplicates


def _new_records(conn: sa.Connection, key: sa.Column, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records whose key is neither loaded nor repeated earlier in `records` (a file copied twice into
    the folder, or old records of a client that reused its X-Request-ID): skipped and counted, not an
    error."""
    fresh: dict[str, dict[str, Any]] = {}
    for record in records:
        fresh.setdefault(record[key.name], record)
    keys = sorted(fresh)
    for start in range(0, len(keys), 1000):
        for loaded in conn.scalars(sa.select(key).where(key.in_(keys[start : start + 1000]))):
            fresh.pop(loaded, None)
    return list(fresh.values())


@dataclass
class Retention:
    """What one retention pass deleted, and which vanished files it stopped tracking."""

    rows_deleted: int = 0
    files_deleted: list[str] = field(default_factory=list)
    files_forgotten: list[str] = field(default_factory=list)


def apply_retention(
    engine: sa.Engine, folder: Path, days: float, now: datetime | None = None, kind: LogKind = PREDICTIONS
) -> Retention:
    """Delete rows of the log `kind` written (answered, labelled) more than `days` ago; delete log files
    fully loaded and untouched for as long, if `folder` is writable (in compose Airflow mounts it read-only:
    files stay); forget the bookkeeping of files it deleted, and of files gone from an existing `folder` and
    last loaded more than `days` ago. Only those: a missing folder, or an empty mount point in its place,
    forgets nothing, and a forgotten file that comes back holds only rows this retention deletes. `days` 0
    keeps everything."""
    done = Retention()
    if days <= 0:
        return done
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=days)
    rows, files = create_tables(engine, kind)
    naive_cutoff = cutoff.replace(tzinfo=None)
    with engine.begin() as conn:
        deleted = conn.execute(rows.delete().where(rows.c.time < naive_cutoff))
        done.rows_deleted = deleted.rowcount
        query = sa.select(files.c.file_name, files.c.loaded_bytes, files.c.updated_at)
        tracked = conn.execute(query).all()
    loaded = {name: size for name, size, _ in tracked}
    last_loaded_long_ago = {name for name, _, updated in tracked if updated < naive_cutoff}
    if not folder.is_dir():
        log.warning("Retention: PREDICTIONS_DIR %s does not exist: no log file deleted or forgotten", folder)
    else:
        if os.access(folder, os.W_OK):
            for path in log_files(folder, kind):
                stat = path.stat()
                if loaded.get(path.name) == stat.st_size and stat.st_mtime < cutoff.timestamp():
                    path.unlink(missing_ok=True)
                    done.files_deleted.append(path.name)
        present = {path.name for path in log_files(folder, kind)}
        gone = set(loaded) - present
        done.files_forgotten = sorted(gone & (last_loaded_long_ago | set(done.files_deleted)))
    if done.files_forgotten:
        with engine.begin() as conn:
            conn.execute(files.delete().where(files.c.file_name.in_(done.files_forgotten)))
    log.info(
        "Retention of %s (%s days): deleted %d rows, %d log files; forgot %d files that are gone",
        rows.name,
        days,
        done.rows_deleted,
        len(done.files_deleted),
        len(done.files_forgotten),
    )
    return done
