"""Promotions while requests run, on a real server: no request fails, none mixes two versions; and many
promotions keep nothing of the replaced models."""

import gc
import os
import threading
import time
import weakref
from pathlib import Path

import httpx

from app.encoding import UnknownCategoryError
from app.predictor import Predictor
from app.schemas import EXAMPLE_PENGUIN, PenguinFeatures
from penguins_pipeline.training import artifacts

PENGUINS = [
    EXAMPLE_PENGUIN,
    {**EXAMPLE_PENGUIN, "island": "Biscoe", "sex": "male"},
    {"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181, "body_mass_g": 3750,
     "island": "Torgersen", "sex": "male"},
]  # fmt: skip


def serve(url: str, version: str) -> None:
    """Promote through the pipeline's own promotion, then make the server take it now."""
    assert httpx.post(f"{url}/warmup", timeout=30).json()["model_version"] == version


def without_id(answer: dict) -> dict:
    """An answer as the model gave it: every answer has a prediction id of its own."""
    return {key: value for key, value in answer.items() if key != "prediction_id"}


def answers_of(url: str) -> list[dict]:
    return [without_id(httpx.post(f"{url}/predict", json=penguin).json()) for penguin in PENGUINS]


def test_promotions_under_load(artifacts_dir: Path, versions, api_server) -> None:
    with api_server(artifacts_dir) as url:
        expected = {versions.main: answers_of(url)}
        artifacts.promote(artifacts_dir, versions.other)
        serve(url, versions.other)
        expected[versions.other] = answers_of(url)
        assert expected[versions.main] != expected[versions.other]

        problems: list[str] = []
        seen: set[str] = set()
        count = 0
        stop = threading.Event()

        def hammer(index: int) -> None:
            nonlocal count
            with httpx.Client(base_url=url, timeout=30) as http:
                while not stop.is_set():
                    which = index % len(PENGUINS)
                    response = http.post("/predict", json=PENGUINS[which])
                    count += 1
                    if response.status_code != 200:
                        problems.append(f"{response.status_code}: {response.text}")
                        continue
                    answer = without_id(response.json())
                    seen.add(answer["model_version"])
                    if answer != expected.get(answer["model_version"], [None] * len(PENGUINS))[which]:
                        problems.append(f"mixed or unknown answer: {answer}")
                    index += 1

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:
            for turn in range(12):
                version = versions.main if turn % 2 == 0 else versions.other
                artifacts.promote(artifacts_dir, version)
                if turn % 3:  # sometimes /warmup, sometimes the poller alone
                    serve(url, version)
                time.sleep(0.25)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert not problems, problems[:3]
        assert seen == {versions.main, versions.other}
        assert count > 100


def fail_holding(predictor: Predictor) -> None:
    """A failed request as Python leaves it: the caught error's traceback holds this frame, which holds the
    error (a reference cycle), and the frames below, which hold the predictor. Only the cyclic collector
    can free that, and never if it was frozen."""
    try:
        predictor.predict_batch([PenguinFeatures(**{**EXAMPLE_PENGUIN, "island": "Atlantis"})], False)
    except UnknownCategoryError as error:
        caught = error
    assert caught.__traceback__ is not None


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_fifty_promotions_leave_every_replaced_model_collectable(
    make_client, artifacts_dir: Path, versions
) -> None:
    """Each replaced predictor, though caught in a reference cycle, is collected (its weak reference goes
    dead), and the memory after 50 promotions is the memory after 10."""
    replaced: list[weakref.ref[Predictor]] = []
    rss: dict[int, float] = {}
    with make_client(artifacts_dir) as client:  # with its lifespan, as a server runs
        store = client.app.state.model_store
        for turn in range(1, 51):
            version = versions.other if turn % 2 else versions.main
            artifacts.promote(artifacts_dir, version)
            assert client.post("/warmup").json()["model_version"] == version
            replaced.append(weakref.ref(store.predictor))
            fail_holding(store.predictor)
            if turn in (10, 50):
                gc.collect()
                rss[turn] = rss_mib()
        gc.collect()
        alive = [turn for turn, ref in enumerate(replaced[:-1], 1) if ref() is not None]
    assert alive == [], f"the models served at promotions {alive} are still in memory"
    assert rss[50] - rss[10] < 2, f"RSS grew from {rss[10]:.1f} to {rss[50]:.1f} MiB in 40 promotions"
