"""Loading versions: anything not exactly what was promoted is refused, and the served model stays."""

import asyncio
import hashlib
import json
import logging
import os
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.model_sources import FolderSource
from app.model_store import ModelStore
from app.schemas import EXAMPLE_PENGUIN
from penguins_pipeline.training import artifacts


def point_current_at(artifacts_dir: Path, version: str) -> None:
    """Promote without the pipeline's checks, as a buggy or hostile writer could."""
    tmp = artifacts_dir / ".current.json.tmp"
    tmp.write_text(json.dumps({"version": version, "promoted_at": "2026-11-27T00:00:00+00:00"}))
    os.replace(tmp, artifacts_dir / "current.json")


def edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def served(client: TestClient) -> str:
    return client.post("/predict", json=EXAMPLE_PENGUIN).json()["model_version"]


def failures(client: TestClient, reason: str) -> float:
    prefix = f'penguins_model_load_failures_total{{reason="{reason}"}} '
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def test_warmup_swaps_to_the_promoted_version(client: TestClient, artifacts_dir: Path, versions) -> None:
    assert served(client) == versions.main
    point_current_at(artifacts_dir, versions.other)
    answer = client.post("/warmup")
    assert answer.json() == {
        "model_version": versions.other,
        "previous_version": versions.main,
        "changed": True,
    }
    assert served(client) == versions.other
    assert client.get("/model").json()["version"] == versions.other
    again = client.post("/warmup").json()
    assert again["changed"] is False


def test_every_worker_converges_by_itself_without_warmup(
    client: TestClient, artifacts_dir: Path, versions
) -> None:
    point_current_at(artifacts_dir, versions.other)
    deadline = time.monotonic() + 10
    while served(client) != versions.other:
        assert time.monotonic() < deadline, "the poller did not pick up the new current.json"
        time.sleep(0.1)


def corrupt_byte(folder: Path) -> str:
    data = bytearray((folder / "serving.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "serving.npz").write_bytes(bytes(data))
    return "checksum"


def truncate(folder: Path) -> str:
    data = (folder / "serving.npz").read_bytes()
    (folder / "serving.npz").write_bytes(data[: len(data) // 3])
    return "checksum"


def delete_file(folder: Path) -> str:
    (folder / "serving.npz").unlink()
    return "missing_file"


def no_export(folder: Path) -> str:
    """A version written before the serving export existed."""
    edit_manifest(folder, lambda m: m["files"].pop("serving.npz"))
    return "no_export"


def broken_manifest(folder: Path) -> str:
    (folder / "manifest.json").write_text("{ not json")
    return "manifest"


def rewrite_export(folder: Path, change, allow_pickle: bool = False) -> None:
    """Change the export's arrays and vouch for the new bytes in the manifest, as a buggy writer could."""
    with np.load(folder / "serving.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    np.savez(folder / "serving.npz", allow_pickle=allow_pickle, **arrays)
    data = (folder / "serving.npz").read_bytes()
    edit_manifest(
        folder,
        lambda m: m["files"]["serving.npz"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)),
    )


def wrong_shape(folder: Path) -> str:
    rewrite_export(folder, lambda a: a.update(forest_children=a["forest_children"][:-1]))
    return "invalid"


def missing_array(folder: Path) -> str:
    rewrite_export(folder, lambda a: a.pop("pca_mean"))
    return "invalid"


def reference_mismatch(folder: Path) -> str:
    """Arrays that load and fit together but no longer answer what scikit-learn answered."""
    rewrite_export(folder, lambda a: a["forest_threshold"].__setitem__(0, a["forest_threshold"][0] + 0.5))
    return "reference_mismatch"


def negative_index(folder: Path) -> str:
    """A signed feature index of -1 on the last node (a leaf, so no walk reads it): its largest index is
    still in range, but cast to unsigned it is not."""

    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays["forest_feature"] = arrays["forest_feature"].astype(np.int64)
        arrays["forest_feature"][-1] = -1

    rewrite_export(folder, change)
    return "invalid"


def pickled_array(folder: Path) -> str:
    """An object array needs unpickling to load: refused, never unpickled."""
    objects = lambda a: a.update(classes=np.array(list(a["classes"]), dtype=object))  # noqa: E731
    rewrite_export(folder, objects, allow_pickle=True)
    return "unreadable"


@pytest.mark.parametrize(
    "damage",
    [
        corrupt_byte,
        truncate,
        delete_file,
        no_export,
        broken_manifest,
        wrong_shape,
        missing_array,
        reference_mismatch,
        negative_index,
        pickled_array,
    ],
)
def test_a_bad_version_is_refused_and_the_served_one_kept(
    client: TestClient, artifacts_dir: Path, versions, damage, caplog: pytest.LogCaptureFixture
) -> None:
    reason = damage(artifacts_dir / "models" / versions.other)
    before = failures(client, reason)
    with caplog.at_level(logging.ERROR, logger="app"):
        point_current_at(artifacts_dir, versions.other)
        answer = client.post("/warmup")
    assert answer.status_code == 503
    assert versions.other in answer.json()["detail"]
    assert f"still serving {versions.main}" in answer.json()["detail"]
    assert "Traceback" not in answer.text
    assert served(client) == versions.main
    assert client.get("/ready").status_code == 200
    assert failures(client, reason) >= before + 1  # +2 if the poller met it before /warmup did
    assert any(versions.other in record.getMessage() for record in caplog.records)


def test_a_version_without_the_export_is_refused_with_the_fix(
    client: TestClient, artifacts_dir: Path, versions
) -> None:
    no_export(artifacts_dir / "models" / versions.other)
    point_current_at(artifacts_dir, versions.other)
    detail = client.post("/warmup").json()["detail"]
    assert "has no serving.npz" in detail
    assert "retrain it with train_pipeline" in detail


def test_a_refused_version_is_not_retried_by_polling_but_is_by_warmup(
    client: TestClient, artifacts_dir: Path, versions
) -> None:
    folder = artifacts_dir / "models" / versions.other
    original = (folder / "serving.npz").read_bytes()
    corrupt_byte(folder)
    point_current_at(artifacts_dir, versions.other)
    assert client.post("/warmup").status_code == 503
    counted = failures(client, "checksum")
    time.sleep(1)  # several poll intervals
    assert failures(client, "checksum") == counted
    (folder / "serving.npz").write_bytes(original)  # repaired in place
    assert client.post("/warmup").json()["model_version"] == versions.other


@pytest.mark.parametrize(
    "content",
    [
        '{"version": "../../etc"}',
        '{"version": 7}',
        "{}",
        "not json",
        '{"version": "20990101T000000000000Z-deadbeef"}',
    ],
)
def test_a_bad_current_json_keeps_the_served_model(
    client: TestClient, artifacts_dir: Path, versions, content
) -> None:
    (artifacts_dir / "current.json").write_text(content)
    answer = client.post("/warmup")
    assert answer.status_code == 503
    assert served(client) == versions.main


def test_starting_over_a_bad_version_serves_nothing_and_says_why(
    artifacts_dir: Path, versions, make_client
) -> None:
    corrupt_byte(artifacts_dir / "models" / versions.main)
    with make_client(artifacts_dir) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "sha256" in ready.json()["detail"]
        assert client.post("/predict", json=EXAMPLE_PENGUIN).status_code == 503


def test_a_replaced_version_is_freed_at_once(artifacts_dir: Path, versions) -> None:
    """By reference counting alone, at once: a replaced predictor holds no reference cycle, so it does not
    wait for the cyclic collector."""
    store = ModelStore(FolderSource(artifacts_dir), near_tie_margin=0.2)
    asyncio.run(store.refresh())
    replaced = weakref.ref(store.predictor)
    artifacts.promote(artifacts_dir, versions.other)
    asyncio.run(store.refresh())
    assert store.predictor.version == versions.other
    assert replaced() is None
