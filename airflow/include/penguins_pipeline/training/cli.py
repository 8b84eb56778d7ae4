"""The kept model versions from a shell: list them, or roll back to one (`make rollback VERSION=<id>`).

A rollback goes through the very function of train_pipeline's `rollback_to` path (`steps.rollback`): the
version's files are checked in full, then the registry's `champion` alias (when MLFLOW_TRACKING_URI is set)
and `current.json` move together.
"""

import argparse
import sys
from pathlib import Path

from penguins_pipeline.core.settings import get_settings
from penguins_pipeline.training import artifacts, steps, tracking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m penguins_pipeline.training.cli", description=__doc__)
    parser.add_argument("--artifacts-dir", type=Path, default=None, help="default: ARTIFACTS_DIR")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the versions on disk, the promoted one marked with *")
    commands.add_parser("rollback", help="verify a version and promote it").add_argument("version")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.artifacts_dir is not None:
        settings = settings.model_copy(update={"artifacts_dir": args.artifacts_dir})
    try:
        if args.command == "list":
            current = artifacts.read_current(settings.artifacts_dir)
            for version in artifacts.list_versions(settings.artifacts_dir):
                print(f"{'*' if version == current else ' '} {version}")
        else:
            promoted = steps.rollback(settings, args.version)
            print(f"promoted {promoted}; the API picks it up within seconds (or POST /warmup)")
    except (artifacts.ArtifactError, tracking.TrackingUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
