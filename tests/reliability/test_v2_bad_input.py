"""The Open Inference Protocol V2 route under bad input, over HTTP to a real server: every bad request the
API tests list in process (tests/api/test_inference_v2.py, JSON and binary tensors) gets its 400 in V2's
format naming the problem, a body over the limit a 413, another model a 404; never a 5xx, a stack trace or a
secret, and the server keeps answering."""

import json
from typing import Any

import httpx
import pytest
from reliability_kit import check_answer, load_module
from vs_mlserver import v2_body

from app.schemas import EXAMPLE_PENGUIN

V2 = load_module("tests/api/test_inference_v2.py", "api_inference_v2_tests")
GOOD = v2_body([EXAMPLE_PENGUIN])  # the benchmark's V2 request, one penguin
MIB = 1024 * 1024


def as_sent(body: Any, headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    sent = body if isinstance(body, bytes) else json.dumps(body).encode()
    return sent, headers or {"content-type": "application/json"}


# name -> (body, headers, status, words in the error, path)
CASES: dict[str, tuple[bytes, dict[str, str], int, str, str]] = {
    **{
        f"json: {name}": (*as_sent(body), 400, words, V2.INFER)
        for name, (body, words) in V2.BAD_REQUESTS.items()
    },
    **{
        f"binary: {name}": (body, headers, 400, words, V2.INFER)
        for name, (body, headers, words) in V2.BAD_BINARY.items()
    },
    "body of 10 MiB": (
        b'{"inputs": [{"name": "island", "data": ["' + b"x" * (10 * MIB) + b'"]}]}',
        {"content-type": "application/json"},
        413,
        "bytes",
        V2.INFER,
    ),
    "another model": (*as_sent(GOOD), 404, "penguins", "/v2/models/whales/infer"),
    "another version": (*as_sent(GOOD), 404, "version", "/v2/models/penguins/versions/0/infer"),
}


@pytest.fixture(scope="module")
def http(live_api) -> object:
    with httpx.Client(base_url=live_api.url, timeout=120) as client:
        yield client


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_v2_request_is_refused_in_v2_format_naming_the_problem(
    http: httpx.Client, figures, name: str
) -> None:
    body, headers, status, words, path = CASES[name]
    answer = http.post(path, content=body, headers=headers)
    figures.record(
        "bad_input", f"v2 {name}", {"cases": 1, "status": answer.status_code, "bytes_sent": len(body)}
    )
    assert check_answer(answer.status_code, answer.text, answer.headers.get("content-type", ""), name) == []
    assert answer.status_code == status, answer.text[:500]
    assert set(answer.json()) == {"error"}, answer.text[:500]
    assert words in answer.json()["error"]
    assert http.post(V2.INFER, json=GOOD).status_code == 200  # and the server still answers
