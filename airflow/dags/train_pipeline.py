"""
### train_pipeline

Trains the penguin species classifier from `penguins_clean` plus the labelled live penguins of
`penguins_labelled`, and promotes it for the API when it beats the champion. Runs by itself after every
successful `data_pipeline` (the `penguins_clean` Asset) OR every `monitor_pipeline` run that finds drift or
falling live accuracy (the `penguins_drift` Asset), or by hand.

**Challenger against champion.** The newest LIVE_TEST_FRACTION (0.3) of `penguins_labelled`, by `labelled_at`,
is never trained on: it is the live test set; the older labelled rows join `penguins_clean` as training rows
(the manifest's `data.sources` counts the rows of each table). The candidate and the champion (the promoted
version, loaded from its folder) are scored on the candidate's held-out rows and on the live test set.
`quality_gate` promotes only if the held-out gate passes AND, when at least MIN_LIVE_LABELLED live test rows
exist, the candidate is strictly more accurate on them than the champion (with fewer, the held-out gate alone
decides, and the reason says so). The decision, both scores and the reason are in the task log, in the MLflow
run (metrics `challenger_live_accuracy`, `champion_live_accuracy`, `challenger_heldout_accuracy`,
`champion_heldout_accuracy`; tag `decision`) and in `ARTIFACTS_DIR/retraining/latest.json`. A candidate
refused by the held-out gate fails the run as before; one that is not better on live rows is discarded, the
champion (`current.json`, alias `champion`) stays, the later tasks are skipped and the run succeeds.

`train` (stratified seeded split, preprocessing and forest fit on the training rows only, held-out metrics,
k-fold CV, version staged in a hidden folder) → `record` (an MLflow run in experiment `penguins`: params,
metrics, confusion matrix, the serving files and the scikit-learn model) → `quality_gate` (MIN_ACCURACY, no
worse than the promoted model on the same held-out rows beyond GATE_TOLERANCE, better on live rows) → `verify`
(files reloaded from disk answer exactly as the trained model did) → `register` (registered model `penguins`,
alias `challenger`) → `promote` (folder renamed into `models/`, alias `champion`, then `current.json` replaced
atomically) → `prune` (keep KEEP_VERSIONS) → `warmup` (POST API_URL/warmup). With MLFLOW_TRACKING_URI empty,
`record` and `register` do nothing and `promote` moves `current.json` alone.

A tracking server that does not answer fails `record`, `register` or `promote` with a message naming
MLFLOW_TRACKING_URI, before anything is registered or moved; the task is retried, and a rerun (Clear) does
whatever is missing: every MLflow step finds its earlier work by the `penguins_version` tag.

**Rollback**: trigger with `rollback_to` = a version id under `ARTIFACTS_DIR/models/`: no training; that
version is verified, the `champion` alias and `current.json` move to it and the API is warmed up. Same from a
shell: `make rollback VERSION=<version>`.

Retries: TASK_RETRIES, RETRY_DELAY_SECONDS. Settings come from the environment (`.env.example`, "training"
section); the logic lives in `penguins_pipeline.training.steps`.
"""

from datetime import timedelta

from airflow.sdk import Asset, Param, TriggerRule, dag, task

from penguins_pipeline.core.schema import CLEAN_ASSET_NAME, DRIFT_ASSET_NAME, VERSION_ID_PATTERN
from penguins_pipeline.core.settings import get_settings
from penguins_pipeline.core.task_runner import run_step

SETTINGS = get_settings()


@dag(
    # Either Asset starts a run: new clean data, or drift / falling live accuracy found by monitor_pipeline.
    schedule=Asset(CLEAN_ASSET_NAME) | Asset(DRIFT_ASSET_NAME),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["penguins", "training"],
    # An unreachable data store or tracking server is worth retrying; a refused model fails at once.
    default_args={
        "retries": SETTINGS.task_retries,
        "retry_delay": timedelta(seconds=SETTINGS.retry_delay_seconds),
    },
    params={
        # Nullable, so the UI's trigger form accepts it empty (a plain string param is a required field).
        "rollback_to": Param(
            None,
            type=["null", "string"],
            pattern=f"^$|{VERSION_ID_PATTERN}",
            description="Empty: train a new version. A version id: skip training and promote that version.",
        )
    },
)
def train_pipeline() -> None:
    # Each task imports train_steps when it runs: it imports scikit-learn, too heavy for every parse.
    @task.branch
    def choose(params: dict) -> str:
        return "rollback" if params["rollback_to"] else "train"

    @task
    def train() -> dict:
        from penguins_pipeline.training import steps as train_steps

        return run_step(train_steps.train)

    @task
    def record(staged: dict, ti=None) -> str | None:
        from penguins_pipeline.training import steps as train_steps
        from penguins_pipeline.training.tracking import airflow_tags

        return run_step(train_steps.record, staged, airflow_tags(ti))

    # A challenger no better than the champion on live rows: False skips every later task, the run succeeds.
    @task.short_circuit
    def quality_gate(staged: dict, ti=None) -> bool:
        from penguins_pipeline.training import steps as train_steps
        from penguins_pipeline.training.tracking import airflow_tags

        return bool(run_step(train_steps.gate, staged, airflow_tags(ti))["promoted"])

    @task
    def verify(staged: dict) -> str:
        from penguins_pipeline.training import steps as train_steps

        return run_step(train_steps.verify, staged)

    @task
    def register(staged: dict, ti=None) -> str | None:
        from penguins_pipeline.training import steps as train_steps
        from penguins_pipeline.training.tracking import airflow_tags

        return run_step(train_steps.register, staged, airflow_tags(ti))

    @task
    def promote(staged: dict, ti=None) -> str:
        from penguins_pipeline.training import steps as train_steps
        from penguins_pipeline.training.tracking import airflow_tags

        return run_step(train_steps.promote, staged, airflow_tags(ti))

    @task
    def rollback(params: dict, ti=None) -> str:
        from penguins_pipeline.training import steps as train_steps
        from penguins_pipeline.training.tracking import airflow_tags

        return run_step(train_steps.rollback, params["rollback_to"], airflow_tags(ti))

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def prune() -> list[str]:
        from penguins_pipeline.training import steps as train_steps

        return run_step(train_steps.prune)

    # The warmup step retries with backoff itself; a failure leaves the model promoted (the API polls too).
    @task(retries=0)
    def warmup() -> dict | None:
        from penguins_pipeline.training import steps as train_steps

        return run_step(train_steps.warmup)

    staged = train()
    promoted = promote(staged)
    rolled_back = rollback()
    choose() >> [staged, rolled_back]
    record(staged) >> quality_gate(staged) >> verify(staged) >> register(staged) >> promoted
    [promoted, rolled_back] >> prune() >> warmup()


train_pipeline()
