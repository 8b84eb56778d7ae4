"""From log files to a published report, without Airflow: the JSON's schema, the self-contained page,
latest.json last, old reports pruned, and the cases where nothing can be judged."""

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from prediction_logs import records, shifted, write_log

import penguins_contract as contract
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.monitoring import drift_report
from penguins_pipeline.monitoring import steps as monitor_steps

RUN = "manual__2026-11-30T23:00:00.123456+00:00"
NOW = datetime.now(UTC)


@pytest.fixture
def settings(tmp_path: Path, versions) -> PipelineSettings:
    folder = tmp_path / "artifacts"
    shutil.copytree(versions.folder, folder)
    return PipelineSettings(
        artifacts_dir=folder,
        penguins_db_url=f"sqlite:///{tmp_path / 'penguins.db'}",
        predictions_dir=tmp_path / "predictions",
    )


def monitor(settings: PipelineSettings, run_id: str = RUN) -> dict:
    monitor_steps.load(settings)
    return monitor_steps.check_drift(settings, run_id)


def latest_json(settings: PipelineSettings) -> dict:
    folder = contract.latest_report(settings.artifacts_dir)
    assert folder is not None
    return json.loads((folder / contract.REPORT_JSON).read_text())


def test_a_shifted_feature_is_reported_with_every_statistic(
    settings: PipelineSettings, versions, clean_penguins: pd.DataFrame
) -> None:
    recent = shifted(clean_penguins, 120, 11, flipper_length_mm=1.5)
    write_log(settings.predictions_dir, records(recent, versions.main), NOW, 1)
    checked = monitor(settings)
    assert checked["drifted"] and checked["drifted_features"] == ["flipper_length_mm"]

    folder = Path(checked["report"])
    assert folder.parent == settings.artifacts_dir / "reports"
    assert contract.report_run(folder.name) == "manual__2026-11-30T23_00_00.123456_00_00"
    report = latest_json(settings)
    assert report["model_version"] == versions.main
    assert report["n_predictions"] == 120 and report["status"] == "ok"
    assert set(report["window"]) == {"start", "end", "hours"} and report["window"]["hours"] == 168
    assert set(report["features"]) == {
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "island",
        "sex",
    }
    for name, result in report["features"].items():
        assert {"drifted", "statistic", "p_value", "psi"} <= set(result)
        assert result["drifted"] == (name == "flipper_length_mm")
    assert report["species"]["test"] == "chi2" and report["species"]["drifted"] is False
    pointer = json.loads((settings.artifacts_dir / "reports" / "latest.json").read_text())
    assert pointer["report"] == folder.name and pointer["drifted"] is True

    page = (folder / contract.REPORT_HTML).read_text()
    # Nothing is loaded from elsewhere (plotly.js holds links in its code, e.g. its logo's: never loaded).
    assert not re.search(r"""src\s*=\s*["']?(https?:)?//""", page), "the page loads something from outside"
    assert not re.search(r"""<link[^>]+href\s*=\s*["']?(https?:)?//""", page)
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js itself is inline
    assert "flipper_length_mm — DRIFTED" in page


def test_the_predictions_of_the_training_distribution_do_not_drift(
    settings: PipelineSettings, versions, clean_penguins: pd.DataFrame
) -> None:
    write_log(settings.predictions_dir, records(shifted(clean_penguins, 150, 12), versions.main), NOW, 1)
    checked = monitor(settings)
    assert (checked["status"], checked["drifted"], checked["drifted_features"]) == ("ok", False, [])
    assert checked["reasons"] == []
    page = (Path(checked["report"]) / contract.REPORT_HTML).read_text()
    assert "No drift" in page
    # No label came back: the live part is there, empty, and flags nothing; no retraining decision yet.
    report = latest_json(settings)
    assert report["live"] == {
        "labelled": 0,
        "unmatched": 0,
        "accuracy": None,
        "min_accuracy": 0.9,
        "min_labelled": 30,
        "below_threshold": False,
        "by_version": {},
    }
    assert report["retraining"] is None
    assert "Live accuracy n/a on 0 labelled predictions" in page
    # One element, which `make screenshots` shoots alone (img/monitoring-live.png).
    assert '<section id="live"><h2>Live accuracy</h2>' in page


def test_too_few_predictions_flag_nothing(
    settings: PipelineSettings, versions, clean_penguins: pd.DataFrame
) -> None:
    recent = shifted(clean_penguins, 20, 13, body_mass_g=3)
    write_log(settings.predictions_dir, records(recent, versions.main), NOW, 1)
    old = records(shifted(clean_penguins, 100, 14), versions.main, end=NOW - timedelta(days=8))
    write_log(settings.predictions_dir, old, NOW - timedelta(days=9), 2)  # outside the 7-day window
    checked = monitor(settings)
    assert (checked["status"], checked["drifted"], checked["n_predictions"]) == ("not_enough_data", False, 20)
    report = latest_json(settings)
    assert report["features"] == {} and report["species"] is None
    assert "Not enough data: 20 predictions" in report["message"]
    assert "Not enough data" in (Path(checked["report"]) / contract.REPORT_HTML).read_text()


def test_the_newest_version_is_judged_on_its_own_predictions(
    settings: PipelineSettings, versions, clean_penguins: pd.DataFrame
) -> None:
    older = records(
        shifted(clean_penguins, 80, 15, bill_depth_mm=2), versions.main, end=NOW - timedelta(hours=2)
    )
    newer = records(shifted(clean_penguins, 60, 16), versions.other, end=NOW)
    write_log(settings.predictions_dir, older, NOW - timedelta(hours=3), 1)
    write_log(settings.predictions_dir, newer, NOW - timedelta(hours=1), 2)
    checked = monitor(settings)
    assert (checked["model_version"], checked["n_predictions"], checked["drifted"]) == (
        versions.other,
        60,
        False,
    )
    assert latest_json(settings)["versions_in_window"] == {versions.main: 80, versions.other: 60}


def test_a_version_whose_files_are_gone_is_not_judged(
    settings: PipelineSettings, clean_penguins: pd.DataFrame
) -> None:
    gone = "20250101T000000000000Z-deadbeef"
    write_log(settings.predictions_dir, records(shifted(clean_penguins, 60, 17), gone), NOW, 1)
    checked = monitor(settings)
    assert (checked["status"], checked["drifted"]) == ("no_reference", False)
    assert gone in latest_json(settings)["message"]


def test_old_reports_are_pruned_the_latest_kept_and_a_retry_replaces_its_report(
    settings: PipelineSettings, versions, clean_penguins: pd.DataFrame
) -> None:
    settings = settings.model_copy(update={"drift_keep_reports": 2})
    write_log(settings.predictions_dir, records(shifted(clean_penguins, 60, 18), versions.main), NOW, 1)
    published = [
        Path(monitor(settings, run)["report"]) for run in ("scheduled__a", "scheduled__b", "scheduled__c")
    ]
    retried = Path(monitor(settings, "scheduled__c")["report"])
    assert retried != published[-1]  # each attempt under a name of its own
    reports = settings.artifacts_dir / "reports"
    assert sorted(p.name for p in reports.iterdir()) == sorted(
        ["latest.json", published[1].name, retried.name]
    )
    assert contract.latest_report(settings.artifacts_dir) == retried


def test_stale_staging_folders_are_removed(settings: PipelineSettings) -> None:
    stale = settings.artifacts_dir / "reports" / ".tmp-killed-writer-0000"
    stale.mkdir(parents=True)
    assert drift_report.prune(settings.artifacts_dir, keep=5, stale_after=0) == [stale.name]


@pytest.mark.parametrize(
    ("run_id", "run"),
    [
        ("manual__2026-11-30T23:00:00+00:00", "manual__2026-11-30T23_00_00_00_00"),
        (".hidden/../x", ".hidden_.._x"),
        ("", ""),
    ],
)
def test_report_ids_are_safe_folder_names_of_their_run_and_time(run_id: str, run: str) -> None:
    name = contract.report_id(run_id, datetime(2026, 12, 7, 12, 30, 1, 2, tzinfo=UTC))
    assert name == f"20261207T123001000002Z-{run}"
    assert contract.REPORT_ID_PATTERN.fullmatch(name) and contract.report_run(name) == run
    long = contract.report_id("x" * 300, NOW)
    assert len(long) == 200 and contract.report_run(long) == "x" * 177


def test_the_window_is_counted_in_full_and_judged_on_a_seeded_sample(
    db_url: str, tmp_path: Path, versions, clean_penguins: pd.DataFrame
) -> None:
    settings = PipelineSettings(
        artifacts_dir=versions.folder, penguins_db_url=db_url, predictions_dir=tmp_path / "predictions"
    )
    recent = shifted(clean_penguins, 3000, 19, flipper_length_mm=1.5)
    write_log(
        settings.predictions_dir, records(recent, versions.main, spacing=timedelta(milliseconds=10)), NOW, 1
    )
    other = records(shifted(clean_penguins, 40, 20), versions.other, end=NOW - timedelta(hours=1))
    write_log(settings.predictions_dir, other, NOW - timedelta(hours=2), 2)
    monitor_steps.load(settings)
    start = NOW - timedelta(hours=settings.drift_window_hours)
    whole = monitor_steps.read_window(settings, start)
    assert (whole.model_version, whole.rows, len(whole.sample)) == (versions.main, 3000, 3000)
    assert whole.versions == {versions.main: 3000, versions.other: 40}

    small = settings.model_copy(update={"drift_sample_rows": 500})
    sampled = monitor_steps.read_window(small, start)
    assert (sampled.rows, len(sampled.sample), sampled.versions) == (3000, 500, whole.versions)
    pd.testing.assert_frame_equal(sampled.sample, monitor_steps.read_window(small, start).sample)  # seeded
    reseeded = monitor_steps.read_window(small.model_copy(update={"random_state": 7}), start).sample
    assert not reseeded.equals(sampled.sample)
    # Uniform: the sample is the window in small (its measures as spread, the islands as shared).
    for name in ("flipper_length_mm", "body_mass_g"):
        assert abs(sampled.sample[name].mean() - whole.sample[name].mean()) < 0.2 * whole.sample[name].std()
    island_share = whole.sample["island"].value_counts(normalize=True)
    assert (sampled.sample["island"].value_counts(normalize=True) - island_share).abs().max() < 0.07

    now = NOW + timedelta(seconds=1)
    full_report, _, _ = monitor_steps.build_report(settings, RUN, now, whole)
    report, _, _ = monitor_steps.build_report(small, RUN, now, sampled)
    assert (report["n_predictions"], report["n_sampled"]) == (3000, 500)
    assert full_report["n_sampled"] == 3000 and "sample" not in full_report["message"]
    assert "Judged on a seeded sample of 500 of the 3,000 predictions" in report["message"]
    assert report["drifted_features"] == full_report["drifted_features"] == ["flipper_length_mm"]
    for name, result in report["features"].items():  # the statistics: those of the whole window, nearly
        full = full_report["features"][name]
        assert result["psi"] == pytest.approx(full["psi"], rel=0.2, abs=0.1)
        if result["test"] == "ks":  # (a chi-square statistic grows with the count; a KS distance does not)
            assert result["statistic"] == pytest.approx(full["statistic"], abs=0.08)
