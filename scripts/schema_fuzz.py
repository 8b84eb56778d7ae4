"""Generated requests for one operation of the API's OpenAPI schema (schemathesis over hypothesis), and the
checks that fail on an answer.

Not a user entry point: shared by tests/api/test_openapi.py (the app, every check) and
tests/reliability/test_fuzzing.py (a real server, a larger budget).
"""

from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, CheckFunction, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup

load_all_checks()
# The registered check functions (all the built-in ones): Case.validate_response takes no check classes.
ALL_CHECKS: list[CheckFunction] = [check for check in CHECKS.get_all() if not isinstance(check, type)]

# A V2 inference request relates its parts (six inputs, each once, all of one length n): JSON Schema cannot
# say so, and the protocol answers such a request 400. There alone a schema-valid request may get a 400;
# every other check stands (the explicit phase sends the documented example, answered 200).
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path-regex": "^/v2/models/.*/infer$",
                "checks": {
                    "positive_data_acceptance": {
                        # schemathesis' default, and 400
                        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx", "400"]
                    }
                },
            }
        ]
    }
)


def label(operation: schemathesis.APIOperation, mode: GenerationMode) -> str:
    return f"{operation.method.upper()} {operation.path} ({mode.value})"


def each_case(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    examples: int,
    run_seed: int,
    send: Callable[[schemathesis.Case], None],
) -> None:
    """`send` the operation's coverage cases, then `examples` generated requests: valid ones or invalid ones
    as `mode` says. The coverage cases are schemathesis' own deterministic walk over the schema's edges (each
    field's boundaries, its wrong types such as `0` for a boolean, an empty list, an empty name), the cases
    its command line runs first: random generation alone missed schema lies they show at once."""
    generation = operation.schema.config.generation_for(operation=operation, phase="coverage")
    for case in operation.schema.iter_coverage_cases(
        operation, generation_modes=[mode], generation_config=generation
    ):
        send(case)

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        send(case)

    try:
        run()
    except Unsatisfiable:
        # No invalid request exists for this operation (e.g. GET /health takes no input at all).
        assert mode is GenerationMode.NEGATIVE, label(operation, mode)


def failed_checks(case: schemathesis.Case, response: Any, checks: list[CheckFunction]) -> list[str]:
    """What each failed check says about one answer."""
    try:
        case.validate_response(response, checks=checks)
    except (Failure, FailureGroup) as error:
        failures = error.exceptions if isinstance(error, FailureGroup) else [error]
        return [f"{failure.code} {failure.title}: {failure.message[:300]}" for failure in failures]
    return []
