"""Damaged artifacts met by a real server's own poller (no /warmup needed): it keeps serving the previous
model, says why in its log, in /ready and in /metrics, refuses the version on /warmup too, and recovers as
soon as a good version is promoted. With nothing good to serve it answers 503 saying what to do.

tests/api/test_model_store.py proves each refusal in process; here the whole server lives through them in a
row, as a production API would.
"""

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from reliability_kit import API, check_answer, server_log, wait_for

from app.schemas import EXAMPLE_PENGUIN
from penguins_pipeline.training import artifacts

POLL_TIMEOUT = 30  # seconds for the 0.2 s poller to notice, generous for a loaded machine


def write_current(folder: Path, content: str) -> None:
    """Replace current.json as a buggy or hostile writer could (atomically, so only the content is wrong)."""
    tmp = folder / ".current.json.tmp"
    tmp.write_text(content)
    os.replace(tmp, folder / "current.json")


def clone(folder: Path, version: str, number: int) -> str:
    """A new, valid version: `version`'s files under a new id (only the manifest names the id)."""
    new = artifacts.new_version_id(hashlib.sha256(f"clone-{number}".encode()).hexdigest())
    shutil.copytree(folder / "models" / version, folder / "models" / new)
    edit_manifest(folder / "models" / new, lambda manifest: manifest.update(version=new))
    return new


def edit_manifest(version_dir: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((version_dir / "manifest.json").read_text())
    change(manifest)
    (version_dir / "manifest.json").write_text(json.dumps(manifest))


def truncate(version_dir: Path) -> None:
    data = (version_dir / "serving.npz").read_bytes()
    (version_dir / "serving.npz").write_bytes(data[: len(data) // 3])


def wrong_checksum(version_dir: Path) -> None:
    edit_manifest(version_dir, lambda m: m["files"]["serving.npz"].update(sha256="0" * 64))


def missing_file(version_dir: Path) -> None:
    (version_dir / "serving.npz").unlink()


def truncated_manifest(version_dir: Path) -> None:
    text = (version_dir / "manifest.json").read_text()
    (version_dir / "manifest.json").write_text(text[: len(text) // 2])


def garbage_with_its_checksum(version_dir: Path) -> None:
    """Bytes that are not an export, with a manifest that vouches for them: the hash passes, loading not."""
    garbage = os.urandom(4096)
    (version_dir / "serving.npz").write_bytes(garbage)
    digest = hashlib.sha256(garbage).hexdigest()
    edit_manifest(version_dir, lambda m: m["files"]["serving.npz"].update(sha256=digest, bytes=4096))


# name -> (damage to a cloned version, or the raw current.json; reason label in /metrics; words in /ready)
VERSION_DAMAGE = {
    "truncated_export": (truncate, "checksum", "sha256"),
    "wrong_checksum": (wrong_checksum, "checksum", "sha256"),
    "missing_file": (missing_file, "missing_file", "serving.npz"),
    "truncated_manifest": (truncated_manifest, "manifest", "manifest.json"),
    "garbage_with_its_checksum": (garbage_with_its_checksum, "unreadable", "cannot read serving.npz"),
}
CURRENT_DAMAGE = {
    "garbage_current_json": ("\x00\xff garbage {", "current_json", "is not"),
    "empty_current_json": ("", "current_json", "is not"),
    "version_without_a_folder": (
        json.dumps({"version": "20990101T000000000000Z-0badf01d"}),
        "manifest",
        "cannot read",
    ),
    "path_traversal": (json.dumps({"version": "../../../../etc"}), "current_json", "not a version id"),
    "absolute_path": (json.dumps({"version": "/etc/passwd"}), "current_json", "not a version id"),
    "version_of_the_wrong_type": (json.dumps({"version": ["x"]}), "current_json", "not a version id"),
}


def load_failures(url: str, reason: str) -> float:
    prefix = f'penguins_model_load_failures_total{{reason="{reason}"}} '
    lines = [line for line in httpx.get(f"{url}/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def served_version(url: str) -> str:
    answer = httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]


@pytest.fixture(scope="module")
def damageable(tmp_path_factory: pytest.TempPathFactory, versions) -> Iterator[tuple[str, Path, str]]:
    """A real server of its own (it will be abused), serving the main version."""
    folder = tmp_path_factory.mktemp("damaged") / "artifacts"
    shutil.copytree(versions.folder, folder)
    artifacts.promote(folder, versions.main)
    with API.running_api(folder, API_ACCESS_LOG="false") as url:
        yield url, folder, versions.main


def ready_detail(url: str) -> str | None:
    return httpx.get(f"{url}/ready").json()["detail"]


def settle_on(url: str, folder: Path, good: str) -> None:
    """Promote the served version again and wait until the poller has read it: /ready's detail is the last
    problem until then, so a case must not start while the previous case's problem is still reported."""
    write_current(folder, json.dumps({"version": good}))
    wait_for(lambda: ready_detail(url) is None, POLL_TIMEOUT, "/ready forgetting the problem")


@pytest.mark.parametrize("name", [*VERSION_DAMAGE, *CURRENT_DAMAGE])
def test_a_damaged_promotion_keeps_the_served_model(damageable, figures, name: str) -> None:
    url, folder, good = damageable
    settle_on(url, folder, good)
    if name in VERSION_DAMAGE:
        damage, reason, words = VERSION_DAMAGE[name]
        bad = clone(folder, good, len(os.listdir(folder / "models")))
        damage(folder / "models" / bad)
        content = json.dumps({"version": bad})
    else:
        content, reason, words = CURRENT_DAMAGE[name]
    before, logged = load_failures(url, reason), len(server_log(url))

    write_current(folder, content)  # the poller meets it by itself
    refused = lambda: load_failures(url, reason) >= before + 1 and words in (ready_detail(url) or "")  # noqa: E731
    wait_for(refused, POLL_TIMEOUT, f"the {name} counted and explained in /ready")
    ready = httpx.get(f"{url}/ready")
    assert ready.status_code == 200 and ready.json()["model_version"] == good
    assert served_version(url) == good
    wait_for(lambda: words in server_log(url)[logged:], POLL_TIMEOUT, f"the {name} in the server's log")

    forced = httpx.post(f"{url}/warmup", timeout=30)
    assert forced.status_code == 503
    assert check_answer(503, forced.text, forced.headers["content-type"], name, unavailable=True) == []
    assert f"still serving {good}" in forced.json()["detail"]
    assert served_version(url) == good
    figures.record("faults", f"damaged_artifacts_{name}", {"cases": 1, "reason": reason, "kept": good})


def test_ready_forgets_a_problem_once_it_is_repaired(damageable) -> None:
    """After a bad current.json is put right (naming the served version again), /ready stops reporting it."""
    url, folder, good = damageable
    settle_on(url, folder, good)
    write_current(folder, "not json")
    wait_for(lambda: ready_detail(url), POLL_TIMEOUT, "/ready reporting the problem")
    settle_on(url, folder, good)


def test_a_good_promotion_after_the_damage_is_served(damageable, versions) -> None:
    url, folder, good = damageable
    artifacts.promote(folder, versions.other)
    wait_for(
        lambda: served_version(url) == versions.other, POLL_TIMEOUT, "the poller serving the next version"
    )
    ready = httpx.get(f"{url}/ready").json()
    assert ready == {"status": "ready", "model_version": versions.other, "detail": None}
    artifacts.promote(folder, good)


def test_with_nothing_good_to_serve_it_is_503_until_a_good_version_arrives(
    tmp_path: Path, versions, figures
) -> None:
    folder = tmp_path / "artifacts"
    shutil.copytree(versions.folder, folder)
    truncate(folder / "models" / versions.main)
    write_current(folder, json.dumps({"version": versions.main}))
    with API.running_api(folder, API_ACCESS_LOG="false") as url:
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 503
        assert "sha256" in ready.json()["detail"] and versions.main in ready.json()["detail"]
        predict = httpx.post(f"{url}/predict", json=EXAMPLE_PENGUIN)
        assert predict.status_code == 503 and "train_pipeline" in predict.json()["detail"]
        assert re.search(rf"model version refused: .*{versions.main}", server_log(url))

        artifacts.promote(folder, versions.other)  # the pipeline promotes a good version: no restart needed
        wait_for(
            lambda: httpx.get(f"{url}/ready").status_code == 200, POLL_TIMEOUT, "/ready after a promotion"
        )
        assert served_version(url) == versions.other
    figures.record("faults", "damaged_artifacts_no_model_to_keep", {"cases": 1, "status_until_repaired": 503})
