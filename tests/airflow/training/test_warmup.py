"""The warmup call against a real HTTP server on a free local port."""

import socket
from typing import TYPE_CHECKING

import pytest

from penguins_pipeline.training.warmup import WarmupError, warm_up

if TYPE_CHECKING:
    from conftest import FakeApi  # the `api` fixture of tests/airflow/conftest.py


def call(url: str, token: str | None = None, attempts: int = 3) -> tuple[dict | None, list[float]]:
    waits: list[float] = []
    answer = warm_up(
        url, token, attempts=attempts, backoff_seconds=0.01, timeout_seconds=2, sleep=waits.append
    )
    return answer, waits


def test_success_returns_the_api_answer(api: "FakeApi") -> None:
    answer, waits = call(api.url)
    assert answer == {"model_version": "v1"}
    assert waits == []
    assert [r["path"] for r in api.requests] == ["/warmup"]
    assert "authorization" not in api.requests[0]


def test_the_token_is_sent_as_a_bearer(api: "FakeApi") -> None:
    call(api.url + "/", token="s3cret")
    assert api.requests[0]["authorization"] == "Bearer s3cret"


@pytest.mark.parametrize("api", [[503, 503]], indirect=True)
def test_503_is_retried_with_doubling_waits(api: "FakeApi") -> None:
    answer, waits = call(api.url)
    assert answer == {"model_version": "v1"}
    assert len(api.requests) == 3
    assert waits == [0.01, 0.02]


@pytest.mark.parametrize("api", [[503, 503, 503]], indirect=True)
def test_giving_up_says_the_model_stays_promoted(api: "FakeApi") -> None:
    with pytest.raises(WarmupError, match=r"failed after 3 attempts \(HTTP 503.*promoted anyway"):
        call(api.url)


@pytest.mark.parametrize("api", [[403]], indirect=True)
def test_a_wrong_token_fails_at_once_with_the_hint(api: "FakeApi") -> None:
    with pytest.raises(WarmupError, match=r"HTTP 403.*check that WARMUP_TOKEN matches"):
        call(api.url, token="wrong")
    assert len(api.requests) == 1


def test_an_unreachable_api_fails_visibly() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        WarmupError, match=rf"POST http://127.0.0.1:{port}/warmup failed after 2 attempts \(Connect"
    ):
        call(f"http://127.0.0.1:{port}", attempts=2)


def test_an_empty_api_url_skips_the_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    assert call("")[0] is None
    assert "API_URL is empty: no warmup call" in caplog.text
