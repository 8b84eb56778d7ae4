"""The version folder on disk: written whole or not at all, verified, promoted atomically, pruned."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import joblib
import pandas as pd
import pytest

import penguins_contract as contract
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts, cli
from penguins_pipeline.training.train import stage_training, train_and_write


@pytest.fixture
def promoted(penguins: pd.DataFrame, quick_settings: PipelineSettings) -> str:
    version = train_and_write(penguins, quick_settings.artifacts_dir, quick_settings)
    artifacts.promote(quick_settings.artifacts_dir, version)
    return version


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes, to prove a failed run changed nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_promoted_version_follows_the_contract(promoted: str, quick_settings: PipelineSettings) -> None:
    root = quick_settings.artifacts_dir
    current = json.loads((root / "current.json").read_text())
    folder = root / "models" / promoted

    assert contract.VERSION_PATTERN.match(promoted)
    assert current["version"] == promoted == artifacts.read_current(root)
    assert current["promoted_at"].endswith("+00:00")
    assert sorted(os.listdir(folder)) == sorted([*contract.VERSION_FILES, "manifest.json"])
    assert [p.name for p in (root / "models").iterdir()] == [promoted]  # no staging left behind
    manifest = artifacts.verify_version(root, promoted)
    assert manifest["version"] == promoted
    assert {name: meta["bytes"] for name, meta in manifest["files"].items()} == {
        name: (folder / name).stat().st_size for name in contract.VERSION_FILES
    }
    split = joblib.load(folder / contract.SPLIT_FILE)
    assert len(split["features_raw"]) == len(split["labels_encoded"]) == manifest["data"]["rows_train"]


def test_version_ids_sort_chronologically() -> None:
    from datetime import UTC, datetime

    early = artifacts.new_version_id("ab" * 32, datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    late = artifacts.new_version_id("00" * 32, datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC))
    assert early == "20260102T030405000006Z-abababab"
    assert early < late


@pytest.mark.parametrize("failing_file", ["model.joblib", "training_split.joblib", "manifest.json"])
def test_a_crash_while_writing_leaves_everything_as_it_was(
    penguins: pd.DataFrame,
    quick_settings: PipelineSettings,
    promoted: str,
    monkeypatch: pytest.MonkeyPatch,
    failing_file: str,
) -> None:
    root = quick_settings.artifacts_dir
    before = snapshot(root)
    real_dump, real_json = artifacts._dump, artifacts.write_json_atomically

    def dump(value: object, path: Path) -> None:
        if Path(path).name == failing_file:
            raise OSError("disk full")
        real_dump(value, path)

    def write_json(path: Path, content: dict) -> None:
        if path.name == failing_file:
            raise OSError("disk full")
        real_json(path, content)

    monkeypatch.setattr(artifacts, "_dump", dump)
    monkeypatch.setattr(artifacts, "write_json_atomically", write_json)
    with pytest.raises(OSError, match="disk full"):
        train_and_write(penguins, root, quick_settings)

    assert artifacts.list_versions(root) == [promoted]
    assert artifacts.read_current(root) == promoted
    assert snapshot(root) == before  # the half-written staging folder is gone too


def test_a_crash_after_staging_leaves_current_and_versions_untouched(
    penguins: pd.DataFrame, quick_settings: PipelineSettings, promoted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = quick_settings.artifacts_dir
    before = snapshot(root)
    monkeypatch.setattr(artifacts.os, "rename", lambda *_: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        train_and_write(penguins, root, quick_settings)

    assert artifacts.list_versions(root) == [promoted]
    assert {k: v for k, v in snapshot(root).items() if not k.startswith("models/.")} == before


def test_an_unwritable_artifacts_dir_names_the_path_and_the_fix(
    penguins: pd.DataFrame, quick_settings: PipelineSettings, tmp_path: Path
) -> None:
    # Tests run as root, for whom chmod does not forbid writing: a regular file where a folder must be does.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    target = blocker / "artifacts"
    with pytest.raises(artifacts.ArtifactsNotWritableError) as failure:
        train_and_write(penguins, target, quick_settings)
    assert str(target) in str(failure.value)
    assert "AIRFLOW_UID=$(id -u)" in str(failure.value)
    assert "chown -R ${AIRFLOW_UID:-50000}:0" in str(failure.value)


def test_verification_catches_a_changed_file_and_changed_answers(
    penguins: pd.DataFrame, quick_settings: PipelineSettings
) -> None:
    staged = Path(stage_training(penguins, quick_settings.artifacts_dir, quick_settings).staging_dir)
    assert artifacts.verify_staged(staged)["version"] == artifacts.staged_version(staged)

    heldout = joblib.load(staged / artifacts.HELDOUT_FILE)
    heldout["probabilities"][0] = heldout["probabilities"][0][::-1] + 0.01
    joblib.dump(heldout, staged / artifacts.HELDOUT_FILE)
    with pytest.raises(artifacts.ArtifactError, match="answers differently on 1 of 67 held-out rows"):
        artifacts.verify_staged(staged)

    with open(staged / "model.joblib", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(artifacts.ArtifactError, match=r"model\.joblib does not match the sha256"):
        artifacts.verify_staged(staged)


@pytest.mark.parametrize("version", ["../../etc", "20260102T030405000006Z-abababab", "latest"])
def test_promote_refuses_unknown_or_malformed_versions(promoted: str, quick_settings, version: str) -> None:
    with pytest.raises(artifacts.ArtifactError):
        artifacts.promote(quick_settings.artifacts_dir, version)
    assert artifacts.read_current(quick_settings.artifacts_dir) == promoted


def test_prune_keeps_the_newest_and_the_promoted_and_sweeps_old_staging(
    promoted: str, quick_settings: PipelineSettings
) -> None:
    models = quick_settings.artifacts_dir / "models"
    newer = [f"2999010{i}T000000000000Z-0000000{i}" for i in range(1, 5)]
    for version in newer:
        shutil.copytree(models / promoted, models / version)
    stale, fresh = models / ".tmp-stale", models / ".tmp-fresh"
    stale.mkdir()
    fresh.mkdir()
    hour_ago = time.time() - 3700
    os.utime(stale, (hour_ago, hour_ago))

    removed = artifacts.prune(quick_settings.artifacts_dir, keep=2)

    assert sorted(removed) == sorted([newer[0], newer[1], ".tmp-stale"])
    assert artifacts.list_versions(quick_settings.artifacts_dir) == [promoted, newer[2], newer[3]]
    assert fresh.exists()
    assert not [p for p in models.iterdir() if p.name.startswith(".tmp-deleting")]


def test_prune_sweeps_a_temporary_current_json_left_by_a_killed_promote(
    promoted: str, quick_settings: PipelineSettings
) -> None:
    root = quick_settings.artifacts_dir
    killed, writing = root / ".current.json.deadbeef.tmp", root / ".current.json.0badf00d.tmp"
    for half_written in (killed, writing):
        half_written.write_text('{"version": "2026')
    two_minutes_ago = time.time() - 120
    os.utime(killed, (two_minutes_ago, two_minutes_ago))

    assert artifacts.prune(root, keep=10) == [killed.name]
    assert not killed.exists()
    assert writing.exists()  # young: it may be a promote's, being written now
    assert artifacts.read_current(root) == promoted


def test_prune_never_breaks_a_concurrent_promote(promoted: str, quick_settings: PipelineSettings) -> None:
    root = quick_settings.artifacts_dir
    done, failures = threading.Event(), []

    def promote_again_and_again() -> None:
        try:
            for _ in range(100):
                artifacts.promote(root, promoted)
        except BaseException as err:  # reported below
            failures.append(err)
        finally:
            done.set()

    promoter = threading.Thread(target=promote_again_and_again)
    promoter.start()
    while not done.is_set():
        artifacts.prune(root, keep=10)
    promoter.join()

    assert failures == []
    assert artifacts.read_current(root) == promoted
    assert list(root.glob(".current.json.*")) == []


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "penguins_pipeline.training.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rollback_is_one_command(
    penguins: pd.DataFrame, quick_settings: PipelineSettings, promoted: str
) -> None:
    root = quick_settings.artifacts_dir
    newer = train_and_write(penguins, root, quick_settings)
    artifacts.promote(root, newer)

    rolled = run_cli("--artifacts-dir", str(root), "rollback", promoted)
    listing = run_cli("--artifacts-dir", str(root), "list")

    assert rolled.returncode == 0, rolled.stderr
    assert f"promoted {promoted}" in rolled.stdout
    assert artifacts.read_current(root) == promoted
    assert listing.stdout.splitlines() == [f"* {promoted}", f"  {newer}"]


def test_rollback_to_a_damaged_version_changes_nothing(
    penguins: pd.DataFrame, quick_settings: PipelineSettings, promoted: str, capsys: pytest.CaptureFixture
) -> None:
    root = quick_settings.artifacts_dir
    older = promoted
    newer = train_and_write(penguins, root, quick_settings)
    artifacts.promote(root, newer)
    (root / "models" / older / "pca.joblib").write_bytes(b"garbage")

    assert cli.main(["--artifacts-dir", str(root), "rollback", older]) == 1
    assert "pca.joblib does not match the sha256" in capsys.readouterr().err
    assert cli.main(["--artifacts-dir", str(root), "rollback", "20990101T000000000000Z-00000000"]) == 1
    assert f"not found in {root / 'models'} (available: {older}, {newer})" in capsys.readouterr().err
    assert artifacts.read_current(root) == newer
