"""The API says loudly at start when it faces the network with an open /warmup (issue 19, item 1)."""

import logging
from pathlib import Path

import pytest


def start_warnings(make_client, artifacts_dir: Path, caplog: pytest.LogCaptureFixture, **settings: object):
    """The app's start-up (its lifespan, as uvicorn runs it) with `settings`: its exposure warnings."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="app"), make_client(artifacts_dir, **settings):
        pass
    return [r.getMessage() for r in caplog.records if "WARMUP_TOKEN" in r.getMessage()]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        # Compose: the container listens on every interface, BIND_ADDRESS says where the host publishes it.
        ({"api_host": "0.0.0.0", "bind_address": "0.0.0.0"}, "BIND_ADDRESS=0.0.0.0"),
        ({"api_host": "0.0.0.0", "bind_address": "192.168.1.20"}, "BIND_ADDRESS=192.168.1.20"),
        # Natively (`make run`, `make api`): API_HOST is what faces the network.
        ({"api_host": "0.0.0.0"}, "API_HOST=0.0.0.0"),
    ],
)
def test_an_open_address_without_a_warmup_token_is_a_warning_at_start(
    make_client, artifacts_dir: Path, caplog: pytest.LogCaptureFixture, settings: dict[str, str], named: str
) -> None:
    (warning,) = start_warnings(make_client, artifacts_dir, caplog, **settings)
    assert named in warning and "POST /warmup" in warning
    (record,) = [r for r in caplog.records if r.getMessage() == warning]
    assert record.levelno == logging.WARNING


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the native default, 127.0.0.1
        {"api_host": "0.0.0.0", "bind_address": "127.0.0.1"},  # compose's default
        {"api_host": "::1"},
        {"api_host": "localhost"},
        {"api_host": "0.0.0.0", "bind_address": "0.0.0.0", "warmup_token": "s3cret"},
    ],
)
def test_a_local_address_or_a_token_starts_quietly(
    make_client, artifacts_dir: Path, caplog: pytest.LogCaptureFixture, settings: dict[str, str]
) -> None:
    assert start_warnings(make_client, artifacts_dir, caplog, **settings) == []
