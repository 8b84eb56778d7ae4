"""The warmup call against a real HTTP server on a free local port."""

import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

from penguins_pipeline.core.task_runner import stop_on_sigterm
from penguins_pipeline.training.warmup import WarmupError, warm_up

if TYPE_CHECKING:
    from conftest import FakeApi  # the `api` fixture of tests/airflow/conftest.py


def free_url() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


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
    url = free_url()
    with pytest.raises(WarmupError, match=rf"POST {url}/warmup failed after 2 attempts \(Connect"):
        call(url, attempts=2)


def test_an_empty_api_url_skips_the_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    assert call("")[0] is None
    assert "API_URL is empty: no warmup call" in caplog.text


class SlowApi(ThreadingHTTPServer):
    """An API that takes its time to answer /warmup (a loaded machine, or one shutting down)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SlowHandler)
        self.daemon_threads = True


class SlowHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        time.sleep(30)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("api_down", [True, False], ids=["between-refused-attempts", "during-a-slow-call"])
def test_a_sigterm_ends_the_warmup_at_once_and_the_task_succeeds(
    api_down: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Airflow forwards SIGTERM to a running task when its scheduler stops (Ctrl-C on `make run`): the
    warmup must not keep the stop waiting through its retries, nor fail a run whose model is promoted."""
    airflow_handler: list[int] = []

    def on_kill(signum: int, _: object) -> None:
        """Airflow's own SIGTERM handler in a task calls the operator's on_kill."""
        airflow_handler.append(signum)

    previous = signal.signal(signal.SIGTERM, on_kill)
    slow = None if api_down else SlowApi()
    if slow is not None:
        threading.Thread(target=slow.serve_forever, daemon=True).start()
    url = free_url() if slow is None else f"http://127.0.0.1:{slow.server_address[1]}"
    try:
        stop = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        stop.start()
        # Without it: 4 refused calls and waits of 1, 2 and 4 s, or 4 calls of 10 s, then WarmupError.
        with stop_on_sigterm():  # as the task's run_step runs it
            answer = warm_up(url, None, attempts=4, backoff_seconds=1.0, timeout_seconds=10)
        stop.join()
        assert answer is None
        assert "SIGTERM: stopping, no more warmup calls" in caplog.text
        assert airflow_handler == [signal.SIGTERM], "Airflow's own handler still runs"
        assert signal.getsignal(signal.SIGTERM) is on_kill, "and is put back"
    finally:
        signal.signal(signal.SIGTERM, previous)
        if slow is not None:
            slow.shutdown()
            slow.server_close()
