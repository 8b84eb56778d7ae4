"""The prediction-log loader on real files and real databases (SQLite and MariaDB): every whole line once,
partial lines later, malformed lines skipped and counted, no duplicate or loss after a crash mid-load, and
records and tables from before prediction ids kept; the feedback log through the same loader."""

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from prediction_logs import feedback, lines, records, write_log
from sqlalchemy.dialects import mysql

from penguins_contract import FEEDBACK_FILE_PREFIX, FEEDBACK_KEY, PREDICTION_FIELDS, PREDICTION_KEY
from penguins_pipeline.core import store
from penguins_pipeline.core.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.core.store import MYSQL_TABLE_OPTIONS
from penguins_pipeline.monitoring import predictions_log
from penguins_pipeline.monitoring import steps as monitor_steps
from penguins_pipeline.monitoring.predictions_log import (
    FEEDBACK_FILES_TABLE,
    FEEDBACK_TABLE,
    FILES_TABLE,
    PREDICTIONS_TABLE,
)

START = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
VERSION = "20261130T220000000000Z-1a2b3c4d"


def table_keys(url: str, key: str = PREDICTION_KEY, table: str = PREDICTIONS_TABLE) -> list[str]:
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(conn.scalars(sa.text(f"SELECT {key} FROM {table}")))
    finally:
        engine.dispose()


def load(
    url: str, folder: Path, chunk_bytes: int = predictions_log.CHUNK_BYTES
) -> predictions_log.LoadReport:
    engine = store.make_engine(url)
    try:
        return predictions_log.load_folder(engine, folder, chunk_bytes)
    finally:
        engine.dispose()


def keys(rows: list[dict]) -> list[str]:
    return sorted(row[PREDICTION_KEY] for row in rows)


def test_several_files_each_line_once_partial_lines_wait(
    db_url: str, tmp_path: Path, clean_penguins: pd.DataFrame
) -> None:
    folder = tmp_path / "predictions"
    first, second = records(clean_penguins.head(30), VERSION), records(clean_penguins.iloc[30:50], VERSION)
    half = lines(second[-1:])[:-20]
    write_log(folder, first, START, 101)
    growing = write_log(folder, second[:-1], START + timedelta(seconds=1), 102, tail=half)
    (folder / "notes.txt").write_text("not a log file\n")

    report = load(db_url, folder, chunk_bytes=1000)  # many small chunks: each committed on its own
    assert (report.files, report.records, report.skipped) == (2, 49, 0)
    assert report.waiting_bytes == len(half)
    assert table_keys(db_url) == keys(first + second[:-1])

    assert load(db_url, folder).records == 0  # a rerun loads nothing new
    assert table_keys(db_url) == keys(first + second[:-1])

    # The writer finishes its line and appends more: only the new lines are loaded.
    more = records(clean_penguins.iloc[50:55], VERSION)
    with open(growing, "ab") as handle:
        handle.write(lines(second[-1:])[-20:] + lines(more))
    report = load(db_url, folder)
    assert (report.records, report.waiting_bytes) == (6, 0)
    assert table_keys(db_url) == keys(first + second + more)


def test_the_loaded_values_are_the_records(db_url: str, tmp_path: Path, clean_penguins: pd.DataFrame) -> None:
    rows = records(clean_penguins.head(3), VERSION, end=START + timedelta(microseconds=123456))
    rows[1].update(item=7, endpoint="predict_batch", probabilities={"Adelie": 0.25, "Gentoo": 0.75})
    write_log(tmp_path, rows, START, 1)
    load(db_url, tmp_path)
    engine = sa.create_engine(db_url)
    loaded = pd.read_sql_table(PREDICTIONS_TABLE, engine).sort_values("time")
    engine.dispose()
    assert list(loaded["item"]) == [0, 7, 0]
    assert list(loaded["bill_length_mm"]) == list(clean_penguins["bill_length_mm"].head(3))
    assert loaded["time"].iloc[-1] == START.replace(tzinfo=None, microsecond=123456)
    assert json.loads(loaded["probabilities"].iloc[1]) == {"Adelie": 0.25, "Gentoo": 0.75}
    assert set(loaded["source_file"]) == {predictions_log.log_files(tmp_path)[0].name}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"species": None}, "species must be a non-empty string"),
        ({"body_mass_g": "heavy"}, "body_mass_g must be a finite number"),
        ({"item": -1}, "item must be a non-negative integer"),
        ({"item": True}, "item must be a non-negative integer"),
        ({"time": "yesterday"}, "time must be an ISO 8601 UTC time"),
        ({"time": "2026-11-30T23:00:00+01:00"}, "time must be in UTC"),
        ({"endpoint": "guess"}, "endpoint must be one of"),
        ({"probabilities": [0.5]}, "probabilities must be an object"),
        ({"request_id": ""}, "request_id must be a non-empty string"),
        ({"prediction_id": "client-42"}, "prediction_id must be 32 lowercase hex digits"),
        ({"prediction_id": "A" * 32}, "prediction_id must be 32 lowercase hex digits"),
        ({"prediction_id": None}, "prediction_id must be 32 lowercase hex digits"),
    ],
)
def test_a_malformed_record_names_its_field(change: dict, message: str, clean_penguins: pd.DataFrame) -> None:
    row = {**records(clean_penguins.head(1), VERSION)[0], **change}
    with pytest.raises(predictions_log.BadRecord, match=message):
        predictions_log.parse_record(json.dumps(row).encode())


def test_malformed_lines_are_skipped_counted_and_logged(
    sqlite_url: str, tmp_path: Path, clean_penguins: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    good = records(clean_penguins.head(4), VERSION)
    missing = {key: value for key, value in good[0].items() if key != "island"}
    bad = b'{"not": "closed"\n' + b"[1, 2]\n" + json.dumps(missing).encode() + b"\n" + b"\xff\xfe\n"
    write_log(tmp_path, [], START, 1, tail=lines(good[:2]) + bad + lines(good[2:]))
    report = load(sqlite_url, tmp_path)
    assert (report.records, report.skipped) == (4, 4)
    assert "missing field(s): island" in caplog.text
    assert "not JSON" in caplog.text and "not a JSON object" in caplog.text
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        counts = conn.execute(sa.text(f"SELECT records, skipped FROM {FILES_TABLE}")).one()
    assert tuple(counts) == (4, 4)


def test_a_prediction_id_seen_before_is_skipped_a_request_id_is_not(
    sqlite_url: str, tmp_path: Path, clean_penguins: pd.DataFrame
) -> None:
    rows = records(clean_penguins.head(5), VERSION)
    for row in rows:  # a client that sends the same X-Request-ID every time
        row["request_id"] = "fixed-header"
    write_log(tmp_path, rows, START, 1)
    write_log(tmp_path, [rows[2], *records(clean_penguins.iloc[5:7], VERSION)], START + timedelta(hours=1), 2)
    report = load(sqlite_url, tmp_path)
    assert (report.records, report.duplicates) == (7, 1)
    assert len(table_keys(sqlite_url)) == 7


def test_the_table_holds_the_contract_fields_keyed_by_prediction_id(sqlite_url: str) -> None:
    table = predictions_log.predictions_table()
    assert tuple(table.columns.keys()) == (*PREDICTION_FIELDS, "source_file")
    assert [column.name for column in table.primary_key] == [PREDICTION_KEY]
    engine = store.make_engine(sqlite_url)
    try:
        predictions_log.create_tables(engine)
        indexes = sa.inspect(engine).get_indexes(PREDICTIONS_TABLE)
    finally:
        engine.dispose()
    assert {"request_id", "time"} <= {index["column_names"][0] for index in indexes}


def legacy(rows: list[dict]) -> list[dict]:
    """`rows` as the API wrote them before prediction ids: the same records without one."""
    return [{name: value for name, value in row.items() if name != PREDICTION_KEY} for row in rows]


def test_records_from_before_prediction_ids_keep_their_old_key(
    sqlite_url: str, tmp_path: Path, clean_penguins: pd.DataFrame
) -> None:
    old = legacy(records(clean_penguins.head(3), VERSION))
    old[1].update(request_id="client#7", item=2)  # a "#" in a client's id stays unambiguous
    path = write_log(tmp_path, old, START, 1)
    assert load(sqlite_url, tmp_path).records == 3
    expected = sorted(predictions_log.legacy_prediction_id(row["request_id"], row["item"]) for row in old)
    assert table_keys(sqlite_url) == expected
    assert "client#7#2" in expected

    # Loaded again (its offset forgotten: the file renamed), nothing is added.
    path.rename(path.with_name(path.name.replace("-1.jsonl", "-2.jsonl")))
    again = load(sqlite_url, tmp_path)
    assert (again.records, again.duplicates) == (0, 3)


def table_before_prediction_ids(metadata: sa.MetaData) -> sa.Table:
    """`penguins_predictions` as the loader made it before prediction ids: keyed (request_id, item)."""
    text = sa.String(128)
    return sa.Table(
        PREDICTIONS_TABLE,
        metadata,
        sa.Column("request_id", text, primary_key=True),
        sa.Column("item", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("time", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"), index=True),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("model_version", text, nullable=False),
        *(sa.Column(name, sa.Double(), nullable=False) for name in NUMERIC_FEATURES),
        *(sa.Column(name, text, nullable=False) for name in CATEGORICAL_FEATURES),
        sa.Column("species", text, nullable=False),
        sa.Column("probabilities", sa.Text(), nullable=False),
        sa.Column("source_file", sa.String(255), nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )


@pytest.mark.parametrize("cut_short", [False, True], ids=["migrated", "migration-resumed"])
def test_a_table_from_before_prediction_ids_is_migrated_keeping_every_row(
    db_url: str, tmp_path: Path, clean_penguins: pd.DataFrame, cut_short: bool
) -> None:
    """An upgrade: a file half loaded by the old loader into the old table, then new records. Cut short: a
    crash in the middle of the migration (MySQL commits each DDL statement on its own)."""
    old = legacy(records(clean_penguins.head(5), VERSION, end=START))
    old_file = write_log(tmp_path, old, START, 1)
    engine = store.make_engine(db_url)
    try:
        metadata = sa.MetaData()
        before, files = table_before_prediction_ids(metadata), predictions_log.files_table(metadata)
        metadata.create_all(engine)
        with engine.begin() as conn:  # what the old loader committed: three lines
            rows = [predictions_log.parse_record(line) for line in lines(old[:3]).splitlines()]
            conn.execute(
                before.insert(),
                [{**row, "source_file": old_file.name} for row in rows if row.pop(PREDICTION_KEY)],
            )
            bookkeeping = {"file_name": old_file.name, "loaded_bytes": len(lines(old[:3])), "records": 3}
            conn.execute(
                files.insert(), {**bookkeeping, "skipped": 0, "updated_at": START.replace(tzinfo=None)}
            )
        if cut_short:  # renamed aside, its index dropped, the new table made with one row copied
            aside = f"{PREDICTIONS_TABLE}_before_ids"
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {PREDICTIONS_TABLE} RENAME TO {aside}"))
                renamed = sa.Table(aside, sa.MetaData(), sa.Column("time", sa.DateTime()))
                sa.Index(f"ix_{PREDICTIONS_TABLE}_time", renamed.c.time).drop(conn)
                half = predictions_log.predictions_table()
                half.create(conn)
                conn.execute(
                    half.insert(), predictions_log.parse_record(lines(old[:1])) | {"source_file": "x"}
                )
    finally:
        engine.dispose()
    new = records(clean_penguins.iloc[5:8], VERSION)
    new[0].update(request_id=old[0]["request_id"], item=0)  # the old key again, a new prediction
    write_log(tmp_path, new, START + timedelta(hours=1), 2)

    report = load(db_url, tmp_path)
    assert (report.records, report.duplicates) == (2 + 3, 0)  # the rest of the old file, the new one
    legacy_keys = [predictions_log.legacy_prediction_id(row["request_id"], row["item"]) for row in old]
    assert table_keys(db_url) == sorted(legacy_keys + keys(new))
    assert load(db_url, tmp_path).records == 0
    engine = sa.create_engine(db_url)
    loaded = pd.read_sql_table(PREDICTIONS_TABLE, engine).set_index(PREDICTION_KEY)
    tables = sa.inspect(engine).get_table_names()
    engine.dispose()
    assert sorted(tables) == sorted([FILES_TABLE, PREDICTIONS_TABLE])  # the renamed old table is gone
    migrated = loaded.loc[legacy_keys[0]]
    assert migrated["time"] == pd.Timestamp(old[0]["time"]).tz_localize(None)
    assert json.loads(migrated["probabilities"]) == old[0]["probabilities"]
    assert migrated["source_file"] == old_file.name


# Loads PREDICTIONS_DIR in 600-byte chunks and is SIGKILLed by its own database driver right after the inserts
# of the third chunk, before that chunk's offset is written and its transaction committed.
KILLED_LOADER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import sqlalchemy as sa
    from penguins_pipeline.monitoring import predictions_log
    from penguins_pipeline.core import store
    engine = store.make_engine(sys.argv[1])
    seen = {"inserts": 0}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def die_before_commit(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT INTO PENGUINS_PREDICTIONS "):
            seen["inserts"] += 1
        elif seen["inserts"] == 3 and "penguins_prediction_files" in statement:
            os.kill(os.getpid(), signal.SIGKILL)

    predictions_log.load_folder(engine, Path(sys.argv[2]), chunk_bytes=600)
    """
)


def two_files(folder: Path, penguins: pd.DataFrame, rows: int) -> list[dict]:
    """`rows` records written to two log files of `folder`, half in each."""
    written = records(penguins.head(rows), VERSION)
    write_log(folder, written[: rows // 2], START, 1)
    write_log(folder, written[rows // 2 :], START + timedelta(minutes=1), 2)
    return written


def start_loader(script: str, db_url: str, folder: Path) -> subprocess.Popen[bytes]:
    """`script` in a fresh Python process (argv: the data store's URL, the log folder), stderr piped."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-c", script, db_url, str(folder)]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE)


def test_a_loader_killed_mid_load_neither_duplicates_nor_loses(
    db_url: str, tmp_path: Path, clean_penguins: pd.DataFrame
) -> None:
    folder = tmp_path / "predictions"
    rows = two_files(folder, clean_penguins, 40)
    killed = start_loader(KILLED_LOADER, db_url, folder)
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == -9, stderr.decode()
    partial = table_keys(db_url)
    assert 0 < len(partial) < 40  # two chunks committed, the third rolled back

    report = load(db_url, folder)
    assert report.records == 40 - len(partial)
    assert report.duplicates == 0
    assert table_keys(db_url) == keys(rows)


def test_an_error_before_commit_leaves_the_chunk_for_the_next_run(
    sqlite_url: str, tmp_path: Path, clean_penguins: pd.DataFrame
) -> None:
    rows = records(clean_penguins.head(10), VERSION)
    write_log(tmp_path, rows, START, 1)
    engine = store.make_engine(sqlite_url)

    def fail_on_offset(conn: object, cursor: object, statement: str, *args: object) -> None:
        if FILES_TABLE in statement and statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            raise RuntimeError("the data store went away")

    sa.event.listen(engine, "before_cursor_execute", fail_on_offset)
    with pytest.raises(RuntimeError, match="went away"):
        predictions_log.load_folder(engine, tmp_path)
    engine.dispose()
    assert table_keys(sqlite_url) == []
    assert load(sqlite_url, tmp_path).records == 10
    assert table_keys(sqlite_url) == keys(rows)


def test_retention_deletes_old_rows_and_old_loaded_files(
    sqlite_url: str, tmp_path: Path, clean_penguins: pd.DataFrame
) -> None:
    now = datetime.now(UTC)
    old = write_log(
        tmp_path, records(clean_penguins.head(5), VERSION, end=now - timedelta(days=40)), START, 1
    )
    os.utime(old, (old.stat().st_atime, (now - timedelta(days=39)).timestamp()))
    fresh_rows = records(clean_penguins.iloc[5:8], VERSION, end=now)
    write_log(tmp_path, fresh_rows, START + timedelta(days=1), 2)
    load(sqlite_url, tmp_path)
    engine = store.make_engine(sqlite_url)
    try:
        assert predictions_log.apply_retention(engine, tmp_path, 0).rows_deleted == 0  # 0 keeps everything
        done = predictions_log.apply_retention(engine, tmp_path, 30)
    finally:
        engine.dispose()
    assert done.rows_deleted == 5
    assert done.files_deleted == [old.name]
    assert done.files_forgotten == [old.name]
    assert not old.exists()
    assert table_keys(sqlite_url) == keys(fresh_rows)
    assert load(sqlite_url, tmp_path).records == 0  # the kept file is still remembered as loaded


def bookkeeping(url: str) -> dict[str, int]:
    """Each remembered log file's loaded offset (penguins_prediction_files)."""
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(f"SELECT file_name, loaded_bytes FROM {FILES_TABLE}")).all())
    finally:
        engine.dispose()


def test_a_missing_or_empty_folder_forgets_no_offset_and_nothing_is_read_again(
    db_url: str, tmp_path: Path, clean_penguins: pd.DataFrame
) -> None:
    folder = tmp_path / "predictions"
    settings = PipelineSettings(penguins_db_url=db_url, predictions_dir=folder)
    assert monitor_steps.load(settings)["files"] == 0  # no folder before the first prediction: not an error
    rows = two_files(folder, clean_penguins, 20)
    monitor_steps.load(settings)
    offsets = bookkeeping(db_url)
    assert len(offsets) == 2

    unmounted = folder.rename(tmp_path / "elsewhere")  # the volume is gone: retention must not forget
    engine = store.make_engine(db_url)
    try:
        assert predictions_log.apply_retention(engine, folder, 30).files_forgotten == []
        folder.mkdir()  # an empty mount point in its place: the same
        assert predictions_log.apply_retention(engine, folder, 30).files_forgotten == []
        folder.rmdir()
    finally:
        engine.dispose()
    assert bookkeeping(db_url) == offsets
    # The load task fails readably (and never reaches retention) while the folder is missing.
    with pytest.raises(predictions_log.MissingFolderError, match="is its volume mounted"):
        monitor_steps.load(settings)
    assert bookkeeping(db_url) == offsets

    unmounted.rename(folder)  # back: nothing is read twice
    loaded = monitor_steps.load(settings)
    assert (loaded["records"], loaded["duplicates"], loaded["retention"]["files_forgotten"]) == (0, 0, [])
    assert table_keys(db_url) == keys(rows)

    # A file that really went away is forgotten once its last load is older than the retention.
    gone, kept = sorted(offsets)
    (folder / gone).unlink()
    engine = store.make_engine(db_url)
    try:
        assert predictions_log.apply_retention(engine, folder, 30).files_forgotten == []
        later = datetime.now(UTC) + timedelta(days=31)  # (and the other file is now old enough to delete)
        done = predictions_log.apply_retention(engine, folder, 30, now=later)
        assert (done.files_deleted, done.files_forgotten) == ([kept], [gone, kept])
    finally:
        engine.dispose()


CONCURRENT_LOADER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from penguins_pipeline.monitoring import predictions_log
    from penguins_pipeline.core import store
    engine = store.make_engine(sys.argv[1])
    try:
        predictions_log.load_folder(engine, Path(sys.argv[2]), chunk_bytes=600)
    except Exception as err:  # the loser of a race: its transaction rolled back
        print(err, file=sys.stderr)
        print("failed with", type(err).__name__, file=sys.stderr)
        sys.exit(3)
    """
)


def test_two_loaders_at_once_never_duplicate(
    db_url: str, tmp_path: Path, clean_penguins: pd.DataFrame
) -> None:
    folder = tmp_path / "predictions"
    rows = two_files(folder, clean_penguins, 200)
    loaders = [start_loader(CONCURRENT_LOADER, db_url, folder) for _ in range(2)]
    outputs = [loader.communicate(timeout=180)[1] for loader in loaders]
    codes = [loader.returncode for loader in loaders]
    errors = [output.decode() for output in outputs]
    assert set(codes) <= {0, 3}, errors
    # The loser's insert meets the winner's keys (on SQLite its write may meet a newer snapshot first).
    failures = [error.strip().splitlines()[-1] for error in errors if "failed with" in error]
    assert set(failures) <= {"failed with ConcurrentLoadError", "failed with OperationalError"}, errors
    load(db_url, folder)  # what a retry of the loser does
    assert table_keys(db_url) == keys(rows)


def feedback_keys(url: str) -> list[str]:
    return table_keys(url, FEEDBACK_KEY, FEEDBACK_TABLE)


def test_feedback_is_loaded_once_by_the_same_loader_bad_lines_counted(
    db_url: str, tmp_path: Path, clean_penguins: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    """The feedback log beside the prediction log: each loader reads only its own files, into its own
    tables with its own offsets; a label for an unknown prediction is kept."""
    answered = records(clean_penguins.head(6), VERSION)
    write_log(tmp_path, answered, START, 1)
    labels = feedback(answered[:4], ["Adelie", "Gentoo", "Chinstrap", "Adelie"], at=START)
    unknown = feedback([{PREDICTION_KEY: "f" * 32}], ["Gentoo"], at=START)
    bad = {**labels[0], "species": ""}
    half = lines(labels[3:])[:-10]
    path = write_log(
        tmp_path, [], START, 7, tail=lines([*labels[:3], bad, *unknown]) + half, prefix=FEEDBACK_FILE_PREFIX
    )
    engine = store.make_engine(db_url)
    try:
        report = predictions_log.load_folder(engine, tmp_path, kind=predictions_log.FEEDBACK)
        assert (report.files, report.records, report.skipped) == (1, 4, 1)
        assert report.waiting_bytes == len(half)
        assert "species must be a non-empty string" in caplog.text
        assert feedback_keys(db_url) == sorted(row[FEEDBACK_KEY] for row in [*labels[:3], *unknown])
        assert predictions_log.load_folder(engine, tmp_path, kind=predictions_log.FEEDBACK).records == 0
        with open(path, "ab") as handle:  # the writer finishes its line
            handle.write(lines(labels[3:])[-10:])
        assert predictions_log.load_folder(engine, tmp_path, kind=predictions_log.FEEDBACK).records == 1
        assert predictions_log.load_folder(engine, tmp_path).records == 6  # the predictions: their own files
        with engine.connect() as conn:
            files = dict(
                conn.execute(sa.text(f"SELECT file_name, records FROM {FEEDBACK_FILES_TABLE}")).all()
            )
            stored = (
                conn.execute(sa.select(predictions_log.feedback_table()).order_by("time")).mappings().all()
            )
    finally:
        engine.dispose()
    assert files == {path.name: 5}
    assert feedback_keys(db_url) == sorted(row[FEEDBACK_KEY] for row in [*labels, *unknown])
    assert table_keys(db_url) == keys(answered)
    first = next(row for row in stored if row[FEEDBACK_KEY] == labels[0][FEEDBACK_KEY])
    assert dict(first) == {
        **labels[0],
        "time": START.replace(tzinfo=None),
        "source_file": path.name,
    }


def test_feedback_files_and_rows_follow_the_retention(
    sqlite_url: str, tmp_path: Path, clean_penguins: pd.DataFrame
) -> None:
    now = datetime.now(UTC)
    answered = records(clean_penguins.head(3), VERSION, end=now - timedelta(days=41))
    old = write_log(
        tmp_path,
        feedback(answered, ["Adelie"] * 3, at=now - timedelta(days=40)),
        START,
        1,
        prefix=FEEDBACK_FILE_PREFIX,
    )
    os.utime(old, (old.stat().st_atime, (now - timedelta(days=39)).timestamp()))
    fresh = feedback(answered[:1], ["Gentoo"], at=now)
    write_log(tmp_path, fresh, START + timedelta(days=1), 2, prefix=FEEDBACK_FILE_PREFIX)
    settings = PipelineSettings(penguins_db_url=sqlite_url, predictions_dir=tmp_path)
    loaded = monitor_steps.load(settings)["feedback"]
    assert loaded["records"] == 4
    assert (loaded["retention"]["rows_deleted"], loaded["retention"]["files_deleted"]) == (3, [old.name])
    assert not old.exists()
    assert feedback_keys(sqlite_url) == [fresh[0][FEEDBACK_KEY]]
