"""The native defaults point into the repository, whatever the working directory of a task process."""

from pathlib import Path

from penguins_pipeline.core.settings import LOCAL_DIR, REPO_ROOT


def test_native_defaults_live_in_the_repository_root() -> None:
    repo = Path(__file__).resolve().parents[3]
    assert repo == REPO_ROOT and (REPO_ROOT / "Makefile").is_file()
    assert repo / ".local" == LOCAL_DIR
