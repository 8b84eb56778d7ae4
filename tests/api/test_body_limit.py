"""A body over the limit, against a real server: every common client reads the 413 and its message (the
server reads and discards the rest first), and a body far beyond the drain bound is cut off."""

import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlparse

import httpx
import pytest
import requests

from app.core.config import Settings

TEN_MB = b"x" * 10_000_000
LIMIT = Settings.model_fields["api_max_body_bytes"].default
DRAIN = Settings.model_fields["api_max_drain_bytes"].default
MESSAGE = f"request body over {LIMIT} bytes"


def with_urllib(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=TEN_MB, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def with_requests(url: str) -> tuple[int, str]:
    answer = requests.post(url, data=TEN_MB, headers={"Content-Type": "application/json"}, timeout=60)
    return answer.status_code, answer.text


def with_httpx(url: str) -> tuple[int, str]:
    answer = httpx.post(url, content=TEN_MB, headers={"Content-Type": "application/json"}, timeout=60)
    return answer.status_code, answer.text


def with_curl(url: str) -> tuple[int, str]:
    if shutil.which("curl") is None:
        pytest.skip("no curl on this machine")
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            "-w",
            "\n%{http_code}",
            url,
        ],
        input=TEN_MB,
        capture_output=True,
        timeout=60,
    )
    body, _, status = done.stdout.decode().rpartition("\n")
    return int(status), body


@pytest.mark.parametrize("client", [with_urllib, with_requests, with_httpx, with_curl])
def test_every_client_reads_the_413_of_a_10_mb_body(
    server: str, client: Callable[[str], tuple[int, str]]
) -> None:
    """urllib and requests send the whole body before reading: answered and closed early, they saw a reset."""
    status, body = client(f"{server}/predict")
    assert status == 413, body
    assert json.loads(body)["detail"].startswith(MESSAGE)


def test_a_body_far_beyond_the_drain_bound_is_cut_off(server: str) -> None:
    """Chunked (no declared length), so only the server's own bound stops it: sending fails long before all of
    a body many times the bound is through."""
    address = urlparse(server)
    chunk = b"x" * (1 << 20)
    sent = 0
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        with pytest.raises(OSError):  # reset or broken pipe once the server closed the connection
            while sent < 16 * DRAIN:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
    assert sent < 4 * DRAIN, sent  # the bound plus what the two sockets' buffers hold
