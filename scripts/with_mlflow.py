"""Run a command with a tracking server to record into: `python scripts/with_mlflow.py <command...>`.

`make pipeline`, `make sweep` and `make rollback` go through it. When MLFLOW_TRACKING_URI is empty, or a
server answers there (the one `make run` starts, say), the command runs as it is. When nothing answers at a
local address (natively the default http://127.0.0.1:5000), the embedded server (SQLite and artifacts under
STACK_MLFLOW_DIR, default `.local/mlflow/`: the same store `make run` uses) is started on that port for the
command's duration, so the runs recorded are there when the stack starts. A remote address that does not
answer is left to the command, which fails naming MLFLOW_TRACKING_URI.
"""

import os
import subprocess
import sys
from urllib.parse import urlsplit

import mlflow_server

from penguins_pipeline.core.settings import PipelineSettings

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# A first start creates the server's database: allow for a machine busy with other work.
START_TIMEOUT_S = 600.0


def main(command: list[str]) -> int:
    uri = PipelineSettings().mlflow_tracking_uri
    address = urlsplit(uri)
    if not uri or mlflow_server.healthy(uri) or address.hostname not in LOCAL_HOSTS or not address.port:
        return subprocess.call(command)
    root = mlflow_server.embedded_root(os.environ)
    print(f"No MLflow server answers at {uri}: starting the embedded one ({root}) for this command")
    with mlflow_server.running(root, address.port, timeout=START_TIMEOUT_S):
        return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
