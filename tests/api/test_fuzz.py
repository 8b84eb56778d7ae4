"""Generated bodies (hypothesis): whatever a client sends, the answer is a 200 or a 4xx, never a 500."""

import json

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.schemas import EXAMPLE_PENGUIN

ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=6,
)
# Mostly a real body with fields replaced, removed or added, so validation is hit deep, not just at the top.
PENGUIN_LIKE = st.builds(
    lambda replaced, removed, added: {
        **{k: v for k, v in EXAMPLE_PENGUIN.items() if k not in removed},
        **replaced,
        **added,
    },
    st.dictionaries(st.sampled_from(list(EXAMPLE_PENGUIN)), ANY_VALUE, max_size=3),
    st.sets(st.sampled_from(list(EXAMPLE_PENGUIN)), max_size=2),
    st.dictionaries(st.text(max_size=8), ANY_VALUE, max_size=1),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def post(client: TestClient, path: str, body: object) -> None:
    answer = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert answer.status_code in (200, 422), (body, answer.status_code, answer.text)
    assert "Traceback" not in answer.text


@FUZZ
@given(body=PENGUIN_LIKE | ANY_VALUE)
def test_predict_never_fails(client: TestClient, body: object) -> None:
    post(client, "/predict", body)


@FUZZ
@given(instances=st.lists(PENGUIN_LIKE, max_size=4), flag=ANY_VALUE)
def test_batch_never_fails(client: TestClient, instances: list, flag: object) -> None:
    post(client, "/predict/batch", {"instances": instances, "include_neighbors": flag})


@FUZZ
@given(raw=st.binary(max_size=200))
def test_raw_bytes_never_fail(client: TestClient, raw: bytes) -> None:
    answer = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code in (400, 422)  # 400: not even text (FastAPI's own answer)
