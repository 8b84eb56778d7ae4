"""
### data_pipeline

Loads the penguins into the data store (`PENGUINS_DB_URL`) as two tables, and announces the clean one to
`train_pipeline` (the `penguins_clean` Asset). Runs once by itself on a fresh stack; trigger it by hand for
more.

`ingest` (the source, `PENGUINS_SOURCE`, streamed in chunks into a staging copy of `penguins_raw`) →
`store_raw` (swapped in atomically) → `clean` (`penguins_raw` streamed through the cleaning rules into a
staging copy of `penguins_clean`; logs and returns rows in, dropped by reason, rows out) → `store_clean`
(swapped in atomically) → `validate` (the published tables hold what this run wrote; publishes the Asset).

- `penguins_raw`: every source row exactly as it came, NULL where missing, with `source_row`, `run_id`,
  `loaded_at`.
- `penguins_clean`: rows with every model column, categories trimmed and spelled as in palmerpenguins,
  plausible measures, no exact duplicates; key `source_row` (the raw row it comes from).

Readers see the previous table or the new one, never a partial one; a failed run leaves both as they were.
Sources that cannot work (unknown, offline, malformed, empty) fail at once; an unreachable data store is
retried (`TASK_RETRIES`, `RETRY_DELAY_SECONDS`). The logic lives in `penguins_pipeline.data.steps`.
"""

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, dag, get_current_context, task

from penguins_pipeline.core.schema import CLEAN_ASSET_NAME
from penguins_pipeline.core.settings import get_settings
from penguins_pipeline.core.task_runner import run_step

CLEAN_ASSET = Asset(CLEAN_ASSET_NAME)
SETTINGS = get_settings()


def this_run() -> str:
    return get_current_context()["run_id"]


@dag(
    schedule="@once",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["penguins", "data"],
    default_args={
        "retries": SETTINGS.task_retries,
        "retry_delay": timedelta(seconds=SETTINGS.retry_delay_seconds),
    },
)
def data_pipeline() -> None:
    # Each task imports data_steps when it runs: it imports pandas, too heavy for every parse.
    @task
    def ingest() -> dict:
        from penguins_pipeline.data import steps as data_steps

        return run_step(data_steps.ingest, this_run())

    @task
    def store_raw(ingested: dict) -> dict:
        from penguins_pipeline.data import steps as data_steps

        return run_step(data_steps.store_raw, ingested)

    @task
    def clean(stored: dict) -> dict:
        from penguins_pipeline.data import steps as data_steps

        # `stored` only orders the tasks: the rows come from penguins_raw, never through XCom.
        return run_step(data_steps.clean, this_run())

    @task
    def store_clean(cleaned: dict) -> dict:
        from penguins_pipeline.data import steps as data_steps

        return run_step(data_steps.store_clean, cleaned)

    @task(outlets=[CLEAN_ASSET])
    def validate(stored: dict, *, outlet_events: object = None) -> dict:
        from penguins_pipeline.data import steps as data_steps

        checked = run_step(data_steps.validate, stored, this_run())
        outlet_events[CLEAN_ASSET].extra = checked  # type: ignore[index]
        return checked

    validate(store_clean(clean(store_raw(ingest()))))


data_pipeline()
