"""How a task runs a step: the one permanent-error rule decides between failing at once and a retry, and a
SIGTERM ends it at once."""

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest
from airflow.sdk.exceptions import AirflowFailException

from penguins_pipeline.core.bulk import BulkLoadError
from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.settings import PipelineSettings, get_settings
from penguins_pipeline.core.store import DataNotReadyError, DataStoreError, StoreURLError
from penguins_pipeline.core.task_runner import StopRequested, run_step
from penguins_pipeline.data.sources import SourceError
from penguins_pipeline.data.steps import ValidationError
from penguins_pipeline.training.artifacts import ArtifactError, ArtifactsNotWritableError
from penguins_pipeline.training.evaluate import QualityGateError
from penguins_pipeline.training.train import TrainingDataError
from penguins_pipeline.training.warmup import WarmupError

# What a retry cannot fix: bad source or setting, missing data, a refused model or artifact.
PERMANENT = [
    SourceError,
    StoreURLError,
    DataNotReadyError,
    BulkLoadError,
    ValidationError,
    TrainingDataError,
    QualityGateError,
    ArtifactError,
    ArtifactsNotWritableError,
]
# What another attempt may fix: the data store or the API unreachable for a while.
TRANSIENT = [DataStoreError, WarmupError, OSError]


def failing(error: Exception) -> Callable[[PipelineSettings], None]:
    """A step that raises `error`, as a real one would midway."""

    def step(settings: PipelineSettings) -> None:
        raise error

    return step


def test_the_step_gets_the_environment_settings_and_the_task_arguments() -> None:
    def step(settings: PipelineSettings, run_id: str, *, rows: int) -> tuple[PipelineSettings, str, int]:
        return settings, run_id, rows

    assert run_step(step, "run-1", rows=3) == (get_settings(), "run-1", 3)


@pytest.mark.parametrize("error", PERMANENT)
def test_a_permanent_error_fails_the_task_at_once(error: type[PermanentError]) -> None:
    raised = error("cannot work")
    with pytest.raises(AirflowFailException) as failed:
        run_step(failing(raised))
    assert str(failed.value) == "cannot work"
    assert failed.value.__cause__ is raised


@pytest.mark.parametrize("error", TRANSIENT)
def test_a_transient_error_is_re_raised_as_is_for_airflow_to_retry(error: type[Exception]) -> None:
    raised = error("try again")
    with pytest.raises(error) as reraised:
        run_step(failing(raised))
    assert reraised.value is raised
    assert not isinstance(raised, PermanentError)


@pytest.mark.parametrize("error", PERMANENT)
def test_a_permanent_error_is_still_caught_as_its_builtin_kind(error: type[PermanentError]) -> None:
    # Callers outside Airflow catch ValueError or RuntimeError: being marked permanent changes nothing there.
    assert issubclass(error, ValueError | RuntimeError)


def test_a_sigterm_ends_the_step_at_once_as_a_failure_to_retry() -> None:
    """Airflow forwards SIGTERM to a task when its scheduler stops, and its own handler (the operator's
    on_kill) lets the task run on: a first training kept Ctrl-C on `make run` waiting for minutes."""
    on_kill: list[int] = []

    def airflow_handler(signum: int, _: object) -> None:
        on_kill.append(signum)

    def long_training(settings: PipelineSettings) -> None:
        for _ in range(600):
            time.sleep(0.1)

    previous = signal.signal(signal.SIGTERM, airflow_handler)
    try:
        stop = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        stop.start()
        with pytest.raises(StopRequested, match="retried at the next start"):
            run_step(long_training)  # not AirflowFailException: Airflow retries it
        stop.join()
        assert on_kill == [signal.SIGTERM], "Airflow's own handler still runs"
        assert signal.getsignal(signal.SIGTERM) is airflow_handler, "and is put back"
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_stop_is_not_swallowed_by_code_that_catches_every_exception() -> None:
    """Libraries catch Exception (scikit-learn's cross_validate scored a stopped fold NaN and trained on):
    the stop goes through them as KeyboardInterrupt would."""

    def careless_library(settings: PipelineSettings) -> str:
        try:
            for _ in range(600):
                time.sleep(0.1)
        except Exception:
            return "swallowed"
        return "finished"

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        stop = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        stop.start()
        with pytest.raises(StopRequested):
            run_step(careless_library)
        stop.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
