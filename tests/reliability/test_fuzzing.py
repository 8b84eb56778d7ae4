"""Property-based fuzzing of every operation of the API's own OpenAPI schema (schemathesis), valid and
invalid inputs, against a real uvicorn server with a real model: never a 5xx, never a leak, and every answer
as documented.

The quick budget runs in `make test`; the thorough one only in `make reliability`.
"""

import random
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from reliability_kit import check_answer
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

# positive_data_acceptance is left out on purpose: island and sex are plain strings in the schema (their
# values come from the served model's manifest), so a schema-valid "Atlantis" is rightly a 422.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def fuzz(
    operation: schemathesis.APIOperation, mode: GenerationMode, examples: int, run_seed: int, url: str
) -> tuple[Counter[int], list[str]]:
    """Send `examples` generated requests to one operation; statuses seen and every problem found."""
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"
    statuses: Counter[int] = Counter()
    problems: list[str] = []

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, timeout=60)
        statuses[response.status_code] += 1
        content_type = response.headers.get("content-type", [""])[0]
        found = check_answer(response.status_code, response.text, content_type, label)
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as error:
            failures = error.exceptions if isinstance(error, FailureGroup) else [error]
            found += [
                f"{label}: {failure.code} {failure.title}: {failure.message[:300]}" for failure in failures
            ]
        problems.extend(f"{problem}\n  {case.as_curl_command(base_url=url)}" for problem in found)

    try:
        send()
    except Unsatisfiable:
        # No invalid request exists for this operation (e.g. GET /health takes no input at all).
        assert mode is GenerationMode.NEGATIVE, label
    return statuses, problems


@pytest.mark.parametrize(
    ("examples", "run_seed"),
    [
        pytest.param(25, 20261127, id="quick"),  # a fixed seed: `make test` is the same every time
        pytest.param(400, None, marks=pytest.mark.slow, id="thorough"),  # new cases each run (seed recorded)
    ],
)
def test_every_operation_survives_generated_requests(live_api, figures, examples: int, run_seed) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json")
    run_seed = run_seed or random.SystemRandom().randrange(2**32)
    per_operation: dict[str, dict] = {}
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            statuses, found = fuzz(operation, mode, examples, run_seed, live_api.url)
            label = f"{operation.method.upper()} {operation.path} ({mode.value})"
            per_operation[label] = {
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
            "checks": [check.__name__ for check in CHECKS],
        },
    )
    documented = {f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()}
    assert {"POST /predict", "POST /predict/batch", "POST /warmup", "GET /ready"} <= documented
    assert all(per_operation[f"{name} (positive)"]["cases"] for name in documented), per_operation
    assert not problems, f"{len(problems)} problem(s) (seed {run_seed}), e.g.:\n" + "\n".join(problems[:5])
