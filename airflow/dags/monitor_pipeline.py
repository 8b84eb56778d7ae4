"""
### monitor_pipeline

Watches what the API answers for drift and, where true species come back, for accuracy. Runs every hour
(and by hand, or `make monitor`); never trains, but its event starts train_pipeline.

`load` (the new whole lines of the API's prediction log in `PREDICTIONS_DIR` into `penguins_predictions`,
and of its feedback log, the true species sent to `POST /feedback`, into `penguins_feedback`; each file's
loaded offset is committed with its rows, so reruns and crashes never duplicate or lose a record; then
`PREDICTIONS_RETENTION_DAYS`) → `check_drift` (rebuilds `penguins_labelled`, each labelled prediction with
its newest label, and measures the live accuracy of the window per model version; then the last
`DRIFT_WINDOW_HOURS` of predictions of the newest model version against that version's training split: KS
test and PSI per measure, chi-square and PSI for island, sex and the predicted species, on a seeded sample of
at most `DRIFT_SAMPLE_ROWS`; a report in `ARTIFACTS_DIR/reports/<UTC time>-<run id>/`, `latest.json` last)
→ `announce` (emits the `penguins_drift` Asset only when something drifted or the live accuracy is below
`MIN_LIVE_ACCURACY` with at least `MIN_LIVE_LABELLED` labels; the event's extra says why in `reasons`;
skipped otherwise).

A feature drifted when its p-value < `DRIFT_P_VALUE` and its PSI >= `DRIFT_PSI`. Fewer than
`DRIFT_MIN_RECORDS` predictions: the report says "not enough data" and flags nothing. The API shows the
newest report at `/monitoring`. The logic lives in `penguins_pipeline.monitoring.steps`.
"""

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from penguins_pipeline.core.schema import DRIFT_ASSET_NAME
from penguins_pipeline.core.settings import get_settings
from penguins_pipeline.core.task_runner import run_step

DRIFT_ASSET = Asset(DRIFT_ASSET_NAME)
SETTINGS = get_settings()


@dag(
    schedule="@hourly",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["penguins", "monitoring"],
    default_args={
        "retries": SETTINGS.task_retries,
        "retry_delay": timedelta(seconds=SETTINGS.retry_delay_seconds),
    },
)
def monitor_pipeline() -> None:
    # Each task imports monitor_steps when it runs: it imports pandas and scipy, too heavy for every parse.
    @task
    def load() -> dict:
        from penguins_pipeline.monitoring import steps as monitor_steps

        return run_step(monitor_steps.load)

    @task
    def check_drift(loaded: dict) -> dict:
        from penguins_pipeline.monitoring import steps as monitor_steps

        # `loaded` only orders the tasks: the predictions come from penguins_predictions.
        return run_step(monitor_steps.check_drift, get_current_context()["run_id"])

    # A skipped task emits no Asset event (only a successful one does): no reason, no event.
    @task(outlets=[DRIFT_ASSET], retries=0)
    def announce(checked: dict, *, outlet_events: object = None) -> dict:
        if not checked["reasons"]:
            raise AirflowSkipException(
                f"no drift ({checked['status']}) and live accuracy not below the threshold "
                f"({checked['live']}): no {DRIFT_ASSET_NAME} event"
            )
        outlet_events[DRIFT_ASSET].extra = checked  # type: ignore[index]
        return checked

    announce(check_drift(load()))


monitor_pipeline()
