"""The OpenAPI schema tells the truth: schemathesis, with every one of its checks, over every operation."""

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from schema_fuzz import ALL_CHECKS, CONFIG, each_case, failed_checks, label
from schemathesis import GenerationMode

EXAMPLES = 60  # per operation and mode, after the coverage cases
SEED = 20261130  # the same cases every run


@pytest.mark.parametrize("token", [None, "s3cret"], ids=["no-warmup-token", "warmup-token"])
def test_every_check_passes_on_every_operation(make_client, artifacts_dir: Path, token: str | None) -> None:
    """Valid requests are accepted, invalid ones rejected, every answer as documented: island and sex as the
    served model's categories in any case, and /warmup's token declared exactly when WARMUP_TOKEN is set."""
    problems: list[str] = []
    sent: Counter[str] = Counter()
    with make_client(artifacts_dir, warmup_token=token) as client:
        schema = schemathesis.openapi.from_asgi("/openapi.json", client.app, config=CONFIG)
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                where = label(operation, mode)

                def send(case: schemathesis.Case, where: str = where) -> None:
                    sent[where] += 1
                    found = failed_checks(case, case.call(), ALL_CHECKS)
                    problems.extend(f"{where}: {failure}\n  {case.as_curl_command()}" for failure in found)

                each_case(operation, mode, EXAMPLES, SEED, send)
    assert {
        "POST /predict",
        "POST /predict/batch",
        "POST /warmup",
        "GET /model",
        "POST /v2/models/{model_name}/infer",
    } <= {f"{operation.method.upper()} {operation.path}" for operation in operations}
    assert all(sent[label(operation, GenerationMode.POSITIVE)] for operation in operations), sent
    kinds = Counter(problem.partition("\n")[0][:200] for problem in problems)
    assert not problems, f"{len(problems)} problem(s): {dict(kinds)}, e.g.:\n" + "\n".join(problems[:6])


def test_the_case_table_keeps_only_the_characters_that_change_case() -> None:
    """The schema's category patterns come from one table of which characters lower to which: it keeps the
    1,400-odd cased groups, not every character of Unicode (that table held some 200 MB for good, which a
    128 MiB container cannot spare on the first GET /openapi.json)."""
    from app.openapi import _unicode_tables, category_pattern

    same_lower, spaces = _unicode_tables()
    assert len(same_lower) < 2000
    assert all(c.lower() == lower for lower, chars in same_lower.items() for c in chars)
    assert (same_lower["k"], same_lower["\u03c3"], same_lower["i"]) == ("Kk\u212a", "\u03a3\u03c3", "Ii")
    assert "q" in same_lower and "1" not in same_lower  # a digit matches itself alone
    assert "\u3000" in spaces and "\u200b" not in spaces
    assert category_pattern(["Dream"]).startswith("^[")
