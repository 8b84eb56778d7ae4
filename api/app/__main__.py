"""`python -m app` (with api/ on the path): the one way to start the API, used by `make api`, the Docker image
and the native runner, so all of them honour the same settings."""

import os
import tempfile
from pathlib import Path

import uvicorn

from app.core.config import get_settings
from app.core.logging import log_config


def _share_metrics_across_workers() -> None:
    """Several workers: each writes its metrics to one folder that /metrics adds up (stale files removed)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="penguins-api-metrics-")


def main() -> None:
    settings = get_settings()
    if settings.api_workers > 1:
        _share_metrics_across_workers()
    uvicorn.run(
        "app.main:app",
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        log_config=log_config(settings.api_log_level),
        log_level=settings.api_log_level,
        access_log=settings.api_access_log,
    )


if __name__ == "__main__":
    main()
