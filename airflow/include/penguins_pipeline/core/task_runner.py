"""How a DAG task runs a step function: settings from the environment, no retry where none can help, and an
end at once when the task is told to stop."""

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Concatenate, ParamSpec, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.settings import PipelineSettings, get_settings

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)


class StopRequested(BaseException):
    """SIGTERM reached the task: its scheduler (or the whole stack, Ctrl-C on `make run`) is stopping.

    A BaseException, as KeyboardInterrupt is: library code that catches Exception must not swallow a stop
    (scikit-learn's cross_validate turned one into a NaN fold score and trained on for seconds)."""


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into StopRequested for the block, after Airflow's own handler (the operator's on_kill).

    Airflow forwards SIGTERM to a running task when its scheduler stops, and its handler lets the task run
    on: a training kept a Ctrl-C waiting for minutes, and the warmup retried an API stopped under it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread, where a task runs
        return
    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(signum, frame)
        raise StopRequested(f"stopped by {signal.Signals(signum).name}: retried at the next start")

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_step(step: Callable[Concatenate[PipelineSettings, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `step(settings, *args)`: a `PermanentError` fails the task at once, anything else is retried.

    The task passes the step itself, not its name, so readers and tools follow a task to its code, and the
    arguments are type-checked against the step's own signature. A SIGTERM ends the step with StopRequested,
    a failure Airflow retries (the warmup makes it a success: penguins_pipeline.warmup).
    """
    log.info("Step %s started (a SIGTERM stops it)", step.__name__)
    try:
        with stop_on_sigterm():
            return step(get_settings(), *args, **kwargs)
    except PermanentError as err:
        raise AirflowFailException(str(err)) from err
