"""Reading `current.json` and manifests, and verifying a version folder against its sha256 list."""

import hashlib
import json
from pathlib import Path

import pytest

import penguins_contract as contract
from penguins_contract import ContractError

VERSION = "20261127T123456123456Z-1a2b3c4d"


def write_version(artifacts_dir: Path, version: str = VERSION) -> Path:
    """A version folder as the pipeline writes it, with stand-in bytes for the joblib files."""
    folder = artifacts_dir / "models" / version
    folder.mkdir(parents=True)
    files = {}
    for name in contract.VERSION_FILES:
        (folder / name).write_bytes(f"bytes of {name}".encode())
        files[name] = contract.file_entry(folder / name)
    manifest = {"schema_version": contract.SCHEMA_VERSION, "version": version, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_checksums_are_sha256() -> None:
    assert contract.sha256_bytes(b"penguin") == hashlib.sha256(b"penguin").hexdigest()


def test_a_file_is_hashed_in_blocks_to_the_same_digest(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10_000  # larger than one block
    (tmp_path / "big").write_bytes(data)
    assert contract.sha256_file(tmp_path / "big") == hashlib.sha256(data).hexdigest()
    assert contract.file_entry(tmp_path / "big") == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }


def test_an_intact_folder_verifies_and_returns_its_manifest(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    manifest = contract.verify_folder(folder)
    assert manifest["version"] == VERSION
    contract.check_manifest(manifest, VERSION, "here")


def test_a_changed_file_is_caught(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    (folder / "model.joblib").write_bytes(b"bytes of model.joblin")  # same size, other bytes
    with pytest.raises(ContractError, match=r"model\.joblib does not match the sha256") as caught:
        contract.verify_folder(folder)
    assert caught.value.reason == "checksum"


def test_a_missing_file_is_caught(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    (folder / "pca.joblib").unlink()
    with pytest.raises(ContractError, match=r"pca\.joblib is missing") as caught:
        contract.verify_folder(folder)
    assert caught.value.reason == "missing_file"


def test_check_bytes_checks_the_bytes_it_is_given(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    entry = contract.read_manifest(folder)["files"]["pca.joblib"]
    contract.check_bytes("pca.joblib", b"bytes of pca.joblib", entry, "here")
    with pytest.raises(ContractError, match=r"here: pca\.joblib does not match .*\(3 bytes on disk\)"):
        contract.check_bytes("pca.joblib", b"pca", entry, "here")


@pytest.mark.parametrize(
    ("files", "words"),
    [
        (None, "lists no files"),
        ({"model.joblib": {"sha256": "0" * 64}}, "no sha256 for"),
        ({name: {"sha256": "0"} for name in [*contract.VERSION_FILES, "../escape"]}, "unusable file entries"),
        ({**{name: {"sha256": "0"} for name in contract.VERSION_FILES}, "extra.bin": "x"}, "unusable"),
    ],
)
def test_a_manifest_must_vouch_for_every_file_and_only_for_plain_names(files: object, words: str) -> None:
    with pytest.raises(ContractError, match=words) as caught:
        contract.listed_files({"files": files}, "here")
    assert caught.value.reason == "manifest"


@pytest.mark.parametrize(
    ("manifest", "words"),
    [
        ({"schema_version": 2, "version": VERSION}, "schema_version is not 1"),
        ({"schema_version": 1, "version": "20000101T000000000000Z-00000000"}, "says version"),
    ],
)
def test_a_manifest_of_another_schema_or_version_is_refused(manifest: dict, words: str) -> None:
    with pytest.raises(ContractError, match=words):
        contract.check_manifest(manifest, VERSION, "here")


@pytest.mark.parametrize("raw", [b"", b"{half", b"[1, 2]", b"\xff\x00"])
def test_a_manifest_that_is_not_a_json_object_is_refused(raw: bytes) -> None:
    with pytest.raises(ContractError) as caught:
        contract.parse_manifest(raw, "here")
    assert caught.value.reason == "manifest"


def test_an_unreadable_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="cannot read"):
        contract.read_manifest(tmp_path)


def test_read_current_before_the_first_promotion_is_none(tmp_path: Path) -> None:
    assert contract.read_current(tmp_path) is None
    assert contract.read_current(tmp_path / "not-even-there") is None


def test_read_current_names_the_promoted_version(tmp_path: Path) -> None:
    (tmp_path / "current.json").write_text(json.dumps({"version": VERSION, "promoted_at": "now"}))
    assert contract.read_current(tmp_path) == VERSION


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", "is not"),
        ("\x00\xff garbage {", "is not"),
        ("[]", "is not"),
        ('{"other": 1}', "is not"),
        (json.dumps({"version": "../../../../etc"}), "not a version id"),
        (json.dumps({"version": ["x"]}), "not a version id"),
    ],
)
def test_read_current_refuses_garbage(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "current.json").write_text(content)
    with pytest.raises(ContractError, match=words) as caught:
        contract.read_current(tmp_path)
    assert caught.value.reason == "current_json"


def test_read_current_reports_an_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "current.json").mkdir()
    with pytest.raises(ContractError, match="cannot read") as caught:
        contract.read_current(tmp_path)
    assert caught.value.reason == "current_json"
