"""/predict's dynamic batching: requests that arrive together are answered together, each exactly as alone."""

import asyncio

import httpx
import pytest

from app.batching import MicroBatcher
from app.core.config import Settings
from app.main import create_app

ADELIE = {"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181, "body_mass_g": 3750,
          "island": "Torgersen", "sex": "male"}  # fmt: skip
GENTOO = {"bill_length_mm": 47.5, "bill_depth_mm": 14.2, "flipper_length_mm": 220, "body_mass_g": 5100,
          "island": "Biscoe", "sex": "female"}  # fmt: skip


def test_items_submitted_in_one_turn_are_answered_by_one_call() -> None:
    calls: list[list[int]] = []

    def double_all(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [2 * item for item in items]

    async def scenario() -> list[int]:
        batcher = MicroBatcher(double_all)
        first = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        return [*first, await batcher.submit(10)]

    assert asyncio.run(scenario()) == [0, 2, 4, 6, 8, 20]
    assert calls == [[0, 1, 2, 3, 4], [10]]


def test_a_bad_item_fails_alone() -> None:
    def invert_all(items: list[int]) -> list[float]:
        return [1 / item for item in items]

    async def scenario() -> list[object]:
        batcher = MicroBatcher(invert_all)
        return await asyncio.gather(*(batcher.submit(i) for i in (1, 0, 4)), return_exceptions=True)

    one, zero, four = asyncio.run(scenario())
    assert (one, four) == (1.0, 0.25)
    assert isinstance(zero, ZeroDivisionError)


def test_a_cancelled_request_does_not_disturb_the_others() -> None:
    async def scenario() -> int:
        batcher = MicroBatcher(lambda items: [item + 1 for item in items])
        gone = asyncio.ensure_future(batcher.submit(1))
        kept = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)  # both are waiting on their futures
        gone.cancel()
        return await kept

    assert asyncio.run(scenario()) == 3


@pytest.fixture
def lifespan_app(artifacts_dir):
    return create_app(Settings(artifacts_dir=artifacts_dir))


def test_one_bad_request_costs_the_others_nothing(lifespan_app, monkeypatch) -> None:
    """Concurrent /predict requests, one with an unknown island: the good ones share ONE pass of the real
    predictor, each answered with the same bits as alone, and the bad one gets its 422 naming the field."""
    from app.predictor import Predictor

    scored: list[int] = []  # penguins in each call of the predictor's scoring
    score = Predictor.score

    def counting(self, measures, categories):
        scored.append(len(measures))
        return score(self, measures, categories)

    async def scenario() -> tuple[list[httpx.Response], list[dict]]:
        async with lifespan_app.router.lifespan_context(lifespan_app):
            transport = httpx.ASGITransport(app=lifespan_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                alone = [(await client.post("/predict", json=p)).json() for p in (ADELIE, GENTOO)]
                monkeypatch.setattr(Predictor, "score", counting)
                bodies = [ADELIE, GENTOO, {**ADELIE, "island": "Atlantis"}, ADELIE, GENTOO, ADELIE, GENTOO]
                together = await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))
                return together, alone

    together, (adelie, gentoo) = asyncio.run(scenario())
    assert scored == [6], f"the six good penguins took {scored} penguins scored per call, not one pass of 6"
    bad = together.pop(2)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "island"]
    assert "Atlantis" in bad.json()["detail"][0]["msg"]
    for response, expected in zip(together, [adelie, gentoo] * 3, strict=True):
        assert response.status_code == 200
        answer = response.json()  # the same bits as when it came alone, but its own prediction id
        assert answer == {**expected, "prediction_id": answer["prediction_id"]}
