"""bench/native_stack.py charges each process to the component `make run` started it as: its labels follow the
command lines scripts/run_stack.py runs, or MLflow's memory would hide under "other"."""

import sys

import mlflow_server
import run_stack
from native_stack import component_name


def test_every_component_of_make_run_is_named_as_the_supervisor_names_it() -> None:
    commands = {
        "api": [sys.executable, "-m", run_stack.API_MODULE],
        "mlflow": mlflow_server.command(5000, "sqlite:///x.db", "/x/artifacts"),
    }
    for name, sub_command in run_stack.AIRFLOW_COMMANDS.items():
        commands[name] = [str(run_stack.BIN / "airflow"), sub_command]
    # Airflow renames its processes once started (setproctitle): `airflow scheduler -- ...`.
    commands |= {"airflow-apiserver": ["airflow api_server -- host:127.0.0.1 port:8080"]}
    assert {name: component_name(argv) for name, argv in commands.items()} == {
        name: name for name in commands
    }
