"""The hand list of bad inputs, sent over HTTP to a real server: each gets a clear 4xx naming what is wrong
(422 with the field, 413 for a body over the limit), never a 5xx, never a stack trace or a secret, and the
server keeps answering. tests/api/test_predict.py proves the same messages in process; this is the wire."""

import json
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from reliability_kit import check_answer, load_module

from app.schemas import EXAMPLE_PENGUIN

ADELIE = load_module("tests/api/test_predict.py", "api_predict_tests").ADELIE  # a real Adelie
JSON = {"content-type": "application/json"}
MIB = 1024 * 1024


def with_value(name: str, raw_json_value: str) -> bytes:
    """ADELIE with one value written as raw JSON text (NaN, 1e999, "\\ud800" cannot come from json.dumps)."""
    return json.dumps({**ADELIE, name: "@@"}).replace('"@@"', raw_json_value).encode()


@dataclass(frozen=True)
class Bad:
    body: bytes
    status: int = 422
    loc: list[Any] | None = None  # where the 422 says the problem is (a prefix of an error's "loc")
    words: str = ""  # in the message
    path: str = "/predict"
    headers: dict[str, str] = field(default_factory=lambda: JSON)


CASES: dict[str, Bad] = {
    "nan_number": Bad(with_value("bill_length_mm", "NaN"), loc=["body", "bill_length_mm"], words="finite"),
    "infinity_number": Bad(with_value("bill_depth_mm", "Infinity"), loc=["body", "bill_depth_mm"]),
    "minus_infinity_number": Bad(with_value("body_mass_g", "-Infinity"), loc=["body", "body_mass_g"]),
    "overflowing_number": Bad(with_value("flipper_length_mm", "1e999"), loc=["body", "flipper_length_mm"]),
    "nan_string": Bad(with_value("bill_length_mm", '"NaN"'), loc=["body", "bill_length_mm"], words="finite"),
    "infinity_string": Bad(with_value("body_mass_g", '"Infinity"'), loc=["body", "body_mass_g"]),
    "negative": Bad(with_value("bill_depth_mm", "-18.7"), loc=["body", "bill_depth_mm"], words="greater"),
    "zero": Bad(with_value("body_mass_g", "0"), loc=["body", "body_mass_g"], words="greater than or equal"),
    "huge": Bad(with_value("body_mass_g", "1e308"), loc=["body", "body_mass_g"], words="less than or equal"),
    "huge_integer": Bad(with_value("body_mass_g", "9" * 400), loc=["body", "body_mass_g"]),
    "text_for_a_number": Bad(with_value("bill_length_mm", '"long"'), loc=["body", "bill_length_mm"]),
    "boolean_for_a_number": Bad(with_value("bill_length_mm", "true"), loc=["body", "bill_length_mm"]),
    "list_for_a_number": Bad(with_value("bill_length_mm", "[39.1]"), loc=["body", "bill_length_mm"]),
    "null_number": Bad(with_value("flipper_length_mm", "null"), loc=["body", "flipper_length_mm"]),
    "unknown_island": Bad(with_value("island", '"Atlantis"'), loc=["body", "island"], words="Biscoe, Dream"),
    "unknown_sex": Bad(with_value("sex", '"unknown"'), loc=["body", "sex"], words="female, male"),
    "empty_island": Bad(with_value("island", '""'), loc=["body", "island"]),
    "number_for_island": Bad(with_value("island", "3"), loc=["body", "island"]),
    "very_long_island": Bad(with_value("island", json.dumps("D" * 100_000)), loc=["body", "island"]),
    "script_in_island": Bad(
        with_value("island", '"<script>alert(1)</script>"'), loc=["body", "island"], words="<script>"
    ),
    "unicode_in_sex": Bad(with_value("sex", '"f\\u00e9male \\u202e \\ud83d\\udc27"'), loc=["body", "sex"]),
    "nul_in_island": Bad(with_value("island", '"Dre\\u0000am"'), loc=["body", "island"]),
    "lone_surrogate_in_island": Bad(with_value("island", '"\\ud800"'), loc=["body", "island"]),
    "lone_surrogate_in_a_number": Bad(
        with_value("bill_length_mm", '"\\udfff"'), loc=["body", "bill_length_mm"]
    ),
    "missing_field": Bad(
        json.dumps({k: v for k, v in ADELIE.items() if k != "sex"}).encode(),
        loc=["body", "sex"],
        words="required",
    ),
    "extra_field": Bad(json.dumps({**ADELIE, "beak_colour": "red"}).encode(), loc=["body", "beak_colour"]),
    "null_body": Bad(b"null", loc=["body"]),
    "empty_body": Bad(b"", loc=["body"]),
    "list_body": Bad(b"[]", loc=["body"]),
    "string_body": Bad(b'"penguin"', loc=["body"]),
    "truncated_json": Bad(json.dumps(ADELIE).encode()[:-5], loc=["body"], words="JSON"),
    "form_encoded": Bad(
        b"bill_length_mm=39.1&island=Dream",
        loc=["body"],
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    "text_plain": Bad(json.dumps(ADELIE).encode(), loc=["body"], headers={"content-type": "text/plain"}),
    "no_content_type": Bad(json.dumps(ADELIE).encode(), loc=["body"], headers={}),
    "body_of_10_mib": Bad(b'{"island": "' + b"x" * (10 * MIB) + b'"}', status=413, words="bytes"),
    "batch_body_of_10_mib": Bad(
        b'{"instances": [' + b",".join([json.dumps(ADELIE).encode()] * 80_000) + b"]}",
        status=413,
        path="/predict/batch",
    ),
    "batch_over_the_limit": Bad(
        json.dumps({"instances": [ADELIE] * 10_001}).encode(),
        loc=["body", "instances"],
        words="at most 10000",
        path="/predict/batch",
    ),
    "empty_batch": Bad(b'{"instances": []}', loc=["body", "instances"], path="/predict/batch"),
    "batch_of_nulls": Bad(b'{"instances": [null]}', loc=["body", "instances", 0], path="/predict/batch"),
    "batch_with_a_bad_penguin": Bad(
        json.dumps({"instances": [ADELIE, {**ADELIE, "island": "Mars"}]}).encode(),
        loc=["body", "instances", 1, "island"],
        path="/predict/batch",
    ),
    "undecodable_bytes": Bad(b'{"island": "\xff\xfe"}', loc=["body"], words="UTF-8"),
    "undecodable_gzip": Bad(b"\x1f\x8b\x08\x00garbage", loc=["body"], words="UTF-8"),
    "undecodable_deep_nesting": Bad(
        b'{"island": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", loc=["body"], words="nested too deeply"
    ),
}


@pytest.fixture(scope="module")
def http(live_api) -> object:
    with httpx.Client(base_url=live_api.url, timeout=120) as client:
        yield client


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_is_a_clear_4xx(http: httpx.Client, figures, name: str) -> None:
    case = CASES[name]
    answer = http.post(case.path, content=case.body, headers=case.headers)
    figures.record(
        "bad_input", name, {"cases": 1, "status": answer.status_code, "bytes_sent": len(case.body)}
    )
    assert check_answer(answer.status_code, answer.text, answer.headers.get("content-type", ""), name) == []
    assert answer.status_code == case.status, answer.text[:500]
    detail = answer.json()["detail"]
    if case.status == 422:
        assert any(error["loc"][: len(case.loc)] == case.loc for error in detail), detail
        assert any(case.words in error["msg"] for error in detail), detail
    else:
        assert case.words in detail
    assert http.post("/predict", json=ADELIE).status_code == 200  # and the server still answers


def test_numbers_as_strings_are_read_as_the_same_numbers(http: httpx.Client, figures) -> None:
    """Lax on purpose (a form sends text): "39.1" answers exactly as 39.1 does."""
    as_text = http.post("/predict", json={k: str(v) for k, v in EXAMPLE_PENGUIN.items()})
    figures.record("bad_input", "numbers_as_strings", {"cases": 1, "status": as_text.status_code})
    assert as_text.status_code == 200
    answer = as_text.json()
    assert answer == {
        **http.post("/predict", json=EXAMPLE_PENGUIN).json(),
        "prediction_id": answer["prediction_id"],
    }


RAW_HTTP = {
    "garbage_request_line": b"GARBAGE\r\n\r\n",
    "url_of_100_kb": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "negative_content_length": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "broken_chunked_body": (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nab\r\n"
    ),
    "length_and_chunked": (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", list(RAW_HTTP))
def test_malformed_http_is_refused_by_the_server_not_crashed(
    live_api, http: httpx.Client, figures, name
) -> None:
    port = int(live_api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(RAW_HTTP[name])
        answer = connection.recv(65536)
    status = int(answer.split(b" ", 2)[1])
    figures.record("bad_input", f"http_{name}", {"cases": 1, "status": status})
    assert check_answer(status, "", "", name) == []
    assert 400 <= status < 500, answer[:300]
    assert http.get("/health").status_code == 200
