"""Property-based fuzzing of every operation of the API's own OpenAPI schema (schemathesis), valid and
invalid inputs, against a real uvicorn server with a real model: never a 5xx, never a leak, and every answer
as documented.

The quick budget runs in `make test`, with a fixed seed; the thorough one only in `make reliability`, with
a fresh random seed each run that make prints (and the report records): `make reliability
RELIABILITY_SEED=<seed>` replays a run.
"""

import os
import random
from collections import Counter

import pytest
import schemathesis
from reliability_kit import check_answer
from schema_fuzz import ALL_CHECKS, CONFIG, each_case, failed_checks, label
from schemathesis import GenerationMode

SEED_ENV = "RELIABILITY_SEED"


def fuzz(
    operation: schemathesis.APIOperation, mode: GenerationMode, examples: int, run_seed: int, url: str
) -> tuple[Counter[int], list[str]]:
    """Send `examples` generated requests to one operation; statuses seen and every problem found."""
    where = label(operation, mode)
    statuses: Counter[int] = Counter()
    problems: list[str] = []

    def send(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, timeout=60)
        statuses[response.status_code] += 1
        content_type = response.headers.get("content-type", [""])[0]
        found = check_answer(response.status_code, response.text, content_type, where)
        found += [f"{where}: {failure}" for failure in failed_checks(case, response, ALL_CHECKS)]
        problems.extend(f"{problem}\n  {case.as_curl_command(base_url=url)}" for problem in found)

    each_case(operation, mode, examples, run_seed, send)
    return statuses, problems


@pytest.mark.parametrize(
    ("examples", "run_seed"),
    [
        pytest.param(25, 20261127, id="quick"),  # a fixed seed: `make test` is the same every time
        pytest.param(400, None, marks=pytest.mark.slow, id="thorough"),  # new cases each run (seed printed)
    ],
)
def test_every_operation_survives_generated_requests(live_api, figures, examples: int, run_seed) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json", config=CONFIG)
    run_seed = run_seed or int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    per_operation: dict[str, dict] = {}
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            statuses, found = fuzz(operation, mode, examples, run_seed, live_api.url)
            per_operation[label(operation, mode)] = {
                "cases": sum(statuses.values()),
                "statuses": dict(sorted(statuses.items())),
            }
            problems += found

    figures.record(
        "fuzzing",
        f"schemathesis, {examples} examples per operation and mode",
        {
            "cases": sum(entry["cases"] for entry in per_operation.values()),
            "seed": run_seed,
            "server_errors": sum(
                n for e in per_operation.values() for s, n in e["statuses"].items() if s >= 500
            ),
            "operations": per_operation,
            "checks": [check.__name__ for check in ALL_CHECKS],
        },
    )
    documented = {f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()}
    assert {"POST /predict", "POST /predict/batch", "POST /warmup", "GET /ready"} <= documented
    assert "POST /v2/models/{model_name}/infer" in documented  # the Open Inference Protocol too
    assert all(per_operation[f"{name} (positive)"]["cases"] for name in documented), per_operation
    replay = f"seed {run_seed}: replay with make reliability {SEED_ENV}={run_seed}"
    assert not problems, f"{len(problems)} problem(s) ({replay}), e.g.:\n" + "\n".join(problems[:5])
