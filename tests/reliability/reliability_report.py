"""The figures of the reliability suite, gathered while it runs and written to bench/results/reliability.json.

Tests record what they tried (`REPORT.record`) and every HTTP status they received (`REPORT.count_status`);
the outcome of each test comes from pytest itself (conftest hooks), so a fault that was not survived shows up
as `failed` here, never as a figure. The file is written only when RELIABILITY_RESULTS names it (`make
reliability`): a partial run (`make test` runs only the fast part) must not overwrite the full figures.
"""

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from provenance import provenance

RESULTS_ENV = "RELIABILITY_RESULTS"

# Items of issue 7 that a unit or integration test elsewhere already proves: referenced, not copied.
# tests/reliability/test_secrets.py checks that every one of these still exists.
COVERED_ELSEWHERE: dict[str, list[str]] = {
    "bad input, in process (NaN, Infinity, out of range, wrong types, missing and extra fields)": [
        "tests/api/test_predict.py::test_a_bad_value_is_a_422_naming_its_field",
        "tests/api/test_predict.py::test_missing_and_unknown_fields_are_named",
        "tests/api/test_predict.py::test_malformed_bodies_are_422_never_500",
        "tests/api/test_predict.py::test_a_body_over_the_limit_is_413",
        "tests/api/test_predict.py::test_a_streamed_body_without_length_cannot_pass_the_limit",
        "tests/api/test_predict.py::test_batch_limits",
    ],
    "generated bodies in process (hypothesis strategies written by hand)": [
        "tests/api/test_fuzz.py::test_predict_never_fails",
    ],
    "damaged artifacts, in process (every damage, refused versions not retried by polling)": [
        "tests/api/test_model_store.py::test_a_bad_version_is_refused_and_the_served_one_kept",
        "tests/api/test_model_store.py::test_a_bad_current_json_keeps_the_served_model",
        "tests/api/test_model_store.py::test_a_refused_version_is_not_retried_by_polling_but_is_by_warmup",
        "tests/api/test_model_store.py::test_starting_over_a_bad_version_serves_nothing_and_says_why",
    ],
    "answers never mix two versions during a swap": [
        "tests/api/test_hot_swap.py::test_promotions_under_load",
    ],
    "unreachable data store: fails after its retries, password hidden": [
        "tests/airflow/test_data_pipeline_dag.py::test_an_unreachable_store_fails_after_its_retries_naming_host_and_url",
        "tests/airflow/core/test_store.py::test_an_unreachable_store_is_named_without_its_password",
    ],
    "readers never see a partial table; a write failing midway leaves the live table": [
        "tests/airflow/core/test_store.py::test_readers_see_the_old_or_the_new_table_never_a_partial_one",
        "tests/airflow/core/test_store.py::test_a_write_failing_midway_leaves_the_live_table_and_no_staging",
    ],
    "a version write failing midway, an unwritable ARTIFACTS_DIR (exceptions injected)": [
        "tests/airflow/training/test_artifacts.py::test_a_crash_while_writing_leaves_everything_as_it_was",
        "tests/airflow/training/test_artifacts.py::test_an_unwritable_artifacts_dir_names_the_path_and_the_fix",
        "tests/airflow/training/test_artifacts.py::test_promote_refuses_unknown_or_malformed_versions",
    ],
    "warmup call: retries, wrong token, unreachable API (against a stand-in server)": [
        "tests/airflow/training/test_warmup.py::test_503_is_retried_with_doubling_waits",
        "tests/airflow/training/test_warmup.py::test_a_wrong_token_fails_at_once_with_the_hint",
        "tests/airflow/training/test_warmup.py::test_an_unreachable_api_fails_visibly",
    ],
    "/warmup token, in process": [
        "tests/api/test_warmup_and_metrics.py::test_warmup_needs_the_token_when_one_is_set",
    ],
    "the API image runs as a non-root user": [
        "tests/deploy/test_compose.py::test_api_image_is_pinned_non_root_and_checks_its_own_health",
    ],
}


# Which category of the issue each test module proves.
CATEGORIES = {
    "test_fuzzing.py": "fuzzing",
    "test_bad_input.py": "bad_input",
    "test_escaping.py": "bad_input",
    "test_load_swap.py": "load",
    "test_damaged_artifacts.py": "faults",
    "test_pipeline_faults.py": "faults",
    "test_killed_writers.py": "faults",
    "test_prediction_log_faults.py": "faults",
    "test_v2_bad_input.py": "bad_input",
    "test_secrets.py": "security",
}


class Report:
    def __init__(self) -> None:
        self.started = time.time()
        self.sections: dict[str, dict[str, Any]] = {}
        self.statuses: Counter[int] = Counter()
        self.outcomes: dict[str, str] = {}
        self.known_bugs: dict[str, str] = {}  # test -> the xfail reason: a bug found, not yet fixed

    def record(self, section: str, name: str, value: Any) -> None:
        self.sections.setdefault(section, {})[name] = value

    def count_status(self, status: int, times: int = 1) -> None:
        self.statuses[status] += times

    def outcome(self, nodeid: str, outcome: str) -> None:
        """The worst outcome of a test's phases wins: a teardown error is not hidden by a passed call."""
        order = ["passed", "skipped", "xfailed", "xpassed", "failed"]
        previous = self.outcomes.get(nodeid, "passed")
        self.outcomes[nodeid] = max(previous, outcome, key=order.index)

    def outcomes_by_category(self) -> dict[str, dict[str, int]]:
        grouped: dict[str, Counter[str]] = {}
        for nodeid, outcome in self.outcomes.items():
            category = CATEGORIES.get(nodeid.split("::")[0].rsplit("/", 1)[-1], "other")
            grouped.setdefault(category, Counter())[outcome] += 1
        return {category: dict(counts) for category, counts in sorted(grouped.items())}

    def as_dict(self) -> dict[str, Any]:
        cases = {
            section: sum(entry.get("cases", 0) for entry in entries.values() if isinstance(entry, dict))
            for section, entries in self.sections.items()
        }
        return {
            "about": "make reliability: tests/reliability on real servers, DAG runs and databases. "
            "cases_tried counts requests or faults per category; responses_5xx excludes the deliberate 503 "
            "(no usable model); tests lists every outcome; known_bugs: xfail reasons, bugs not fixed yet.",
            **provenance(),  # the commit, the date, the machine and how busy it was: it is shared
            "seconds": round(time.time() - self.started, 1),
            "summary": {
                "cases_tried": {section: count for section, count in cases.items() if count},
                "responses": sum(self.statuses.values()),
                # 503 is the API's deliberate "no usable model: run train_pipeline" (asserted where expected).
                "responses_5xx": sum(
                    n for status, n in self.statuses.items() if status >= 500 and status != 503
                ),
                "responses_503_deliberate": self.statuses.get(503, 0),
                "responses_by_status": {str(status): n for status, n in sorted(self.statuses.items())},
                "tests": dict(Counter(self.outcomes.values())),
                "tests_by_category": self.outcomes_by_category(),
                "known_bugs": len(self.known_bugs),
            },
            **self.sections,
            "known_bugs": dict(sorted(self.known_bugs.items())),
            "tests": dict(sorted(self.outcomes.items())),
            "covered_elsewhere": COVERED_ELSEWHERE,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")
        os.replace(tmp, path)


REPORT = Report()
