"""Live accuracy and `penguins_labelled` on real log files and real databases (SQLite and MariaDB): the newest
label of a prediction wins, labels for unknown predictions are counted and kept, and accuracy, recall and the
confusion matrix per model version match a small set checked by hand."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from prediction_logs import feedback, records, write_log

from penguins_contract import FEEDBACK_FILE_PREFIX, FEEDBACK_KEY, PREDICTION_KEY
from penguins_pipeline.core import store
from penguins_pipeline.monitoring import live, predictions_log
from penguins_pipeline.monitoring.predictions_log import FEEDBACK, FEEDBACK_TABLE

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
START = NOW - timedelta(hours=24)
A, B = "20261130T220000000000Z-1a2b3c4d", "20261201T080000000000Z-5e6f7a8b"


def answered(penguins: pd.DataFrame, version: str, predicted: list[str], end: datetime) -> list[dict]:
    """Prediction records of `version` for the first rows of `penguins`, answering `predicted`."""
    rows = records(penguins.head(len(predicted)), version, end=end)
    for row, species in zip(rows, predicted, strict=True):
        row["species"] = species
    return rows


@pytest.fixture
def logged(tmp_path: Path, clean_penguins: pd.DataFrame) -> dict[str, list[dict]]:
    """The hand-checked set, written as the API writes its logs.

    Version A answers p0..p4 in the window and p7 ten days earlier; version B answers p5 and p6 (p6 never
    labelled). Labels: p0 Gentoo, then later Adelie (the newer wins); p1 Gentoo and Chinstrap at the same
    time (the greater feedback_id wins: Chinstrap); p2 Gentoo, p3 Adelie, p4 Adelie, p5 Gentoo, p7 Adelie;
    one label for a prediction never logged (unmatched)."""
    version_a = answered(clean_penguins, A, ["Adelie", "Adelie", "Gentoo", "Chinstrap", "Adelie"], NOW)
    version_b = answered(clean_penguins.iloc[10:], B, ["Gentoo", "Gentoo"], NOW)
    old = answered(clean_penguins.iloc[20:], A, ["Adelie"], NOW - timedelta(days=10))
    folder = tmp_path / "predictions"
    write_log(folder, [*version_a, *version_b], NOW, 1)
    write_log(folder, old, NOW - timedelta(days=10), 2)
    p = [*version_a, *version_b, *old]
    first = feedback([p[0], p[1], p[1]], ["Gentoo", "Gentoo", "Chinstrap"], at=NOW + timedelta(minutes=1))
    first[1]["feedback_id"], first[2]["feedback_id"] = "a" * 32, "b" * 32
    later = feedback(
        [p[0], p[2], p[3], p[4], p[5], p[7]],
        ["Adelie", "Gentoo", "Adelie", "Adelie", "Gentoo", "Adelie"],
        at=NOW + timedelta(minutes=2),
    )
    unknown = feedback([{PREDICTION_KEY: "0" * 32}], ["Gentoo"], at=NOW)
    write_log(folder, [*first, *unknown], NOW, 3, prefix=FEEDBACK_FILE_PREFIX)
    write_log(folder, later, NOW + timedelta(minutes=2), 4, prefix=FEEDBACK_FILE_PREFIX)
    return {"predictions": p, "labels": [*first, *later, *unknown], "newest_p0": later[:1]}


@pytest.fixture
def engine(db_url: str, tmp_path: Path, logged: dict) -> sa.Engine:
    engine = store.make_engine(db_url)
    predictions_log.load_folder(engine, tmp_path / "predictions")
    predictions_log.load_folder(engine, tmp_path / "predictions", kind=FEEDBACK)
    yield engine
    engine.dispose()


def labelled_rows(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql_table(live.LABELLED_TABLE, conn).set_index(PREDICTION_KEY)


def test_labelled_holds_each_matched_prediction_once_with_its_newest_label_and_provenance(
    engine: sa.Engine, logged: dict, clean_penguins: pd.DataFrame
) -> None:
    p = logged["predictions"]
    assert live.rebuild_labelled(engine, "run-1") == 7
    rows = labelled_rows(engine)
    assert list(rows.columns) == [
        FEEDBACK_KEY,
        "species",
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
        "predicted_species",
        "model_version",
        "predicted_at",
        "labelled_at",
    ]
    # p6 was never labelled; the unknown label matches nothing.
    assert sorted(rows.index) == sorted(row[PREDICTION_KEY] for row in p[:6] + p[7:])
    truth = {
        row[PREDICTION_KEY]: species
        for row, species in zip(
            p, ["Adelie", "Chinstrap", "Gentoo", "Adelie", "Adelie", "Gentoo", None, "Adelie"], strict=True
        )
    }
    assert rows["species"].to_dict() == {key: value for key, value in truth.items() if value}
    assert rows.loc[p[1][PREDICTION_KEY], FEEDBACK_KEY] == "b" * 32  # a tie: the greater feedback_id
    first = rows.loc[p[0][PREDICTION_KEY]]
    assert first[FEEDBACK_KEY] == logged["newest_p0"][0][FEEDBACK_KEY]
    assert (first["predicted_species"], first["model_version"], first["year"]) == ("Adelie", A, 2026)
    assert first["predicted_at"] == pd.Timestamp(p[0]["time"]).tz_localize(None)
    assert first["labelled_at"] == pd.Timestamp(NOW + timedelta(minutes=2)).tz_localize(None)
    penguin = clean_penguins.iloc[0]
    for name in ("island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"):
        assert first[name] == penguin[name]

    # Rebuilt by the next run: the same rows, no staging or old copy left, every label still kept.
    live.rebuild_labelled(engine, "run-2")
    pd.testing.assert_frame_equal(labelled_rows(engine).sort_index(), rows.sort_index())
    tables = sa.inspect(engine).get_table_names()
    assert [name for name in tables if name.startswith(live.LABELLED_TABLE)] == [live.LABELLED_TABLE]
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {FEEDBACK_TABLE}")).scalar() == len(
            logged["labels"]
        )


def test_live_accuracy_of_the_window_per_version_on_a_hand_checked_set(engine: sa.Engine) -> None:
    live.rebuild_labelled(engine, "run-1")
    measured = live.measure(engine, START, min_accuracy=0.9, min_labelled=5)
    assert measured == {
        "labelled": 6,  # p7 was answered before the window
        "unmatched": 1,
        "accuracy": pytest.approx(4 / 6),
        "min_accuracy": 0.9,
        "min_labelled": 5,
        "below_threshold": True,
        "by_version": {
            A: {
                "labelled": 5,
                "accuracy": pytest.approx(3 / 5),
                "recall": {"Adelie": pytest.approx(2 / 3), "Chinstrap": 0.0, "Gentoo": 1.0},
                "confusion": {
                    "labels": ["Adelie", "Chinstrap", "Gentoo"],
                    "matrix": [[2, 1, 0], [1, 0, 0], [0, 0, 1]],
                },
            },
            B: {
                "labelled": 1,
                "accuracy": 1.0,
                "recall": {"Gentoo": 1.0},
                "confusion": {"labels": ["Gentoo"], "matrix": [[1]]},
            },
        },
    }
    # Too few labels to judge, or accurate enough: not below the threshold.
    assert live.measure(engine, START, min_accuracy=0.9, min_labelled=7)["below_threshold"] is False
    assert live.measure(engine, START, min_accuracy=0.6, min_labelled=5)["below_threshold"] is False


def test_no_label_yet_measures_nothing_and_flags_nothing(sqlite_url: str) -> None:
    engine = store.make_engine(sqlite_url)
    try:
        measured = live.measure(engine, START, min_accuracy=0.9, min_labelled=1)
        assert (measured["labelled"], measured["accuracy"], measured["below_threshold"]) == (0, None, False)
        assert live.rebuild_labelled(engine, "run-1") == 0
    finally:
        engine.dispose()


def test_a_species_only_predicted_has_no_recall() -> None:
    measured = live.summarize([("v", "Adelie", "Gentoo", 2), ("v", "Adelie", "Adelie", 1)], 0, 0.9, 1)
    assert measured["by_version"]["v"]["recall"] == {"Adelie": pytest.approx(1 / 3), "Gentoo": None}
    assert measured["by_version"]["v"]["confusion"]["matrix"] == [[1, 2], [0, 0]]
