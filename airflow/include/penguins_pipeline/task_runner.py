"""How a DAG task runs a step function: settings from the environment, and no retry where none can help."""

from types import ModuleType

from penguins_pipeline.settings import get_settings


def run_step(steps: ModuleType, name: str, *args: object) -> object:
    """Call `steps.<name>(settings, *args)`; a `steps.PERMANENT_ERRORS` fails the task at once, unretried."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return getattr(steps, name)(get_settings(), *args)
    except steps.PERMANENT_ERRORS as err:
        raise AirflowFailException(str(err)) from err
