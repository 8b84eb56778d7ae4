"""How a DAG task runs a step function: settings from the environment, and no retry where none can help."""

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.settings import PipelineSettings, get_settings

P = ParamSpec("P")
R = TypeVar("R")


def run_step(step: Callable[Concatenate[PipelineSettings, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `step(settings, *args)`: a `PermanentError` fails the task at once, anything else is retried.

    The task passes the step itself, not its name, so readers and tools follow a task to its code, and the
    arguments are type-checked against the step's own signature.
    """
    try:
        return step(get_settings(), *args, **kwargs)
    except PermanentError as err:
        raise AirflowFailException(str(err)) from err
