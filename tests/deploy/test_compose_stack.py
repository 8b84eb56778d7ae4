"""`docker compose up` for real, as a new user runs it, on the engine `DOCKER_HOST` / the Docker CLI reaches.

One scenario in steps that build on each other (a module-scoped stack): a clean `up -d --build` serves a
prediction hands-free; every port is published and listening on 127.0.0.1 only, and opening them with
BIND_ADDRESS is warned about; ./artifacts belongs to a non-root AIRFLOW_UID; the API's prediction log is read
by Airflow, loaded into MySQL by monitor_pipeline and judged in a report the API shows, and the loaded files
older than the retention are deleted; MLflow keeps a run's metadata in its own MySQL database and its
artifacts in the `s3` bucket, which refuses wrong keys; `down`/`up` serves the same version at once and keeps
MLflow's runs, registry and objects; the first training's run files and MLflow model are objects in the
bucket with the bytes ./artifacts holds; faults (mysql stopped mid-run, the API killed under load); the
Celery override with two workers; the feedback loop with MySQL (a shifted colony labelled through POST
/feedback, its live accuracy in the report and /metrics, train_pipeline started by penguins_drift and a
better challenger promoted, the decision recorded); an API in MODEL_REGISTRY=mlflow with no volume serves
the `champion` alias and follows its moves; and `down -v` leaves nothing.
`make test-compose` runs it; with no engine it skips, saying why (in CI it fails). Needs
`../shared/container-engine/engine-up.sh` or any Docker engine.
"""

import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import boto3
import httpx
import mlflow
import pandas as pd
import psutil
import pytest
import yaml
from botocore.exceptions import ClientError
from compose_stack import (
    CELERY,
    LONG_RUNNING,
    ONE_SHOT,
    ComposeStack,
    StackError,
    cgroup_figures,
    engine_problem,
    inspect,
    memory_usage,
    running,
    served_version,
    wait_for,
)
from free_port import free_port
from live_labels import live_accuracy, serve_and_label
from prometheus_client.parser import text_string_to_metric_families

from app.schemas import EXAMPLE_PENGUIN
from penguins_contract import MANIFEST_FILE, SERVING_FILE, sha256_bytes
from penguins_contract.registry import (
    CHAMPION,
    EXPERIMENT,
    REGISTERED_MODEL,
    RUN_SERVING_DIR,
    TAG_SERVING_SHA256,
    TAG_VERSION,
)
from penguins_pipeline.core.schema import RETRAINING_DIR, RETRAINING_FILE
from penguins_pipeline.training.tracking import DECISION_TAG

pytestmark = pytest.mark.compose

NON_ROOT_UID = 1000
PREDICTIONS = "/opt/predictions"
# Penguins sent for monitor_pipeline to judge: more than DRIFT_MIN_RECORDS (50).
MONITORED = 60
# A shifted colony the champion mislabels, all labelled through POST /feedback: the newest 30 % of them
# (LIVE_TEST_FRACTION) are train_pipeline's live test set, at least MIN_LIVE_LABELLED (30, the default).
COLONY = 100
MIN_LIVE_ACCURACY = 0.9  # the default
# The course's memory limit for the API (issue 22), MiB: the whole scenario runs under it.
API_MEMORY_MIB = 128
# Short retries so the mysql fault fails its run in seconds rather than minutes; the object store's keys and
# bucket as a user's .env would set them.
SETTINGS = {
    "AIRFLOW_UID": str(NON_ROOT_UID),
    "TASK_RETRIES": "1",
    "RETRY_DELAY_SECONDS": "3",
    "S3_ACCESS_KEY": "compose-test",
    "S3_SECRET_KEY": secrets.token_urlsafe(24),
    "S3_BUCKET": "tracking",
    "API_MEMORY": f"{API_MEMORY_MIB}m",
}
# What the host logs through the MLflow server, under names of its own (training registers `penguins`).
CHECK_MODEL = "compose-check"
CHECK_ARTIFACT = "check/note.txt"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must prove the compose stack, but {problem}")
        pytest.skip(f"{problem}; start one with ../shared/container-engine/engine-up.sh")
    project = f"penguins-e2e-{secrets.token_hex(3)}"
    with running(ComposeStack.scratch(tmp_path_factory.mktemp("compose"), project, **SETTINGS)) as up:
        yield up


@pytest.fixture(scope="module")
def first_version(stack: ComposeStack) -> str:
    try:
        stack.compose("up", "-d", "--build")
        return stack.wait_served(timeout=900)
    except Exception as err:
        raise AssertionError(f"{err}\n{stack.logs()}") from err


def all_healthy(stack: ComposeStack) -> set[str]:
    """The services, once every long-running one passes its healthcheck and every one-shot job exited 0."""
    containers = stack.containers()
    for c in containers:
        done = c["State"] == "exited" and c.get("ExitCode") == 0
        if not (done if c["Service"] in ONE_SHOT else c.get("Health") == "healthy"):
            return set()
    return {c["Service"] for c in containers}


def s3_client(stack: ComposeStack, key: str | None = None, secret: str | None = None) -> Any:
    """boto3 on the published S3 port, with the stack's keys unless told otherwise."""
    return boto3.client(
        "s3",
        endpoint_url=stack.s3_url,
        aws_access_key_id=key or stack.env["S3_ACCESS_KEY"],
        aws_secret_access_key=secret or stack.env["S3_SECRET_KEY"],
        region_name="us-east-1",
    )


def bucket_keys(stack: ComposeStack) -> set[str]:
    """Every object's key in the bucket, listed with the stack's keys."""
    pages = s3_client(stack).get_paginator("list_objects_v2").paginate(Bucket=stack.env["S3_BUCKET"])
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def bucket_bytes(stack: ComposeStack, key: str) -> bytes:
    return bytes(s3_client(stack).get_object(Bucket=stack.env["S3_BUCKET"], Key=key)["Body"].read())


def bucket_object(stack: ComposeStack, run_id: str) -> tuple[str, bytes]:
    """The key and the bytes of the run's artifact in the bucket, listed and read with the stack's keys."""
    (key,) = [k for k in bucket_keys(stack) if k.endswith(f"{run_id}/artifacts/{CHECK_ARTIFACT}")]
    return key, bucket_bytes(stack, key)


def proxied_key(uri: str) -> str:
    """The bucket key of an artifact URI behind the server's proxy: `mlflow-artifacts:/<path>` is stored at
    `s3://<bucket>/<path>` (--artifacts-destination)."""
    parsed = urlparse(uri)
    assert parsed.scheme == "mlflow-artifacts", uri
    return parsed.path.strip("/")


@dataclass(frozen=True)
class Tracked:
    run_id: str
    version: str
    note: str


@pytest.fixture(scope="module")
def tracked(stack: ComposeStack, first_version: str) -> Tracked:
    """A run with a param, a metric and an artifact, logged from the host through the MLflow server with no
    storage keys on this side (proxied artifacts), and a registered version of it, alias `champion`."""
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    run = client.create_run(client.create_experiment(CHECK_MODEL))
    note = f"logged through the proxy {secrets.token_hex(8)}"
    client.log_param(run.info.run_id, "n_estimators", "100")
    client.log_metric(run.info.run_id, "accuracy", 0.99)
    client.log_text(run.info.run_id, note, CHECK_ARTIFACT)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(CHECK_MODEL)
    version = client.create_model_version(
        CHECK_MODEL, source=f"{run.info.artifact_uri}/check", run_id=run.info.run_id
    ).version
    client.set_registered_model_alias(CHECK_MODEL, CHAMPION, version)
    return Tracked(run.info.run_id, str(version), note)


def runs(stack: ComposeStack, dag_id: str) -> list[tuple[str, str]]:
    return [(run["dag_run_id"], run["state"]) for run in stack.dag_runs(dag_id)]


def train_run_after(stack: ComposeStack, known: set[str]) -> str:
    """The train_pipeline run an Asset (penguins_clean or penguins_drift) triggered after `known`, once it
    succeeded: its id. (A model is served as soon as it is promoted, before the run's prune and warmup
    end.)"""
    run_id = wait_for(
        "train_pipeline triggered by an Asset",
        lambda: next((r for r, _ in runs(stack, "train_pipeline") if r not in known), None),
        timeout=300,
    )
    assert stack.wait_run("train_pipeline", run_id, timeout=900) == "success"
    return run_id


def trainings_ended(stack: ComposeStack) -> None:
    """Block until no train_pipeline run is queued or running (one may move the `champion` alias)."""
    wait_for(
        "no train_pipeline run left to end",
        lambda: all(state in ("success", "failed") for _, state in runs(stack, "train_pipeline")),
        timeout=900,
    )


def test_up_from_clean_serves_a_prediction_hands_free(stack: ComposeStack, first_version: str) -> None:
    answer = stack.predict()
    assert answer.status_code == 200
    assert answer.json()["model_version"] == first_version
    assert answer.json()["species"] in answer.json()["probabilities"]
    # Both DAG runs of the first start succeeded, with nobody clicking anything (admin/admin logs in).
    assert [state for _, state in runs(stack, "data_pipeline")] == ["success"]
    train_run_after(stack, known=set())
    assert len(runs(stack, "train_pipeline")) == 1
    # Every long-running service passes its own healthcheck on this engine, and the one-shot job is done.
    services = wait_for("every service healthy", lambda: all_healthy(stack), timeout=180)
    assert services == {*LONG_RUNNING, *ONE_SHOT}
    page = httpx.get(f"{stack.api_url}/", timeout=10)
    assert page.status_code == 200 and "<form" in page.text
    docs = httpx.get(f"{stack.api_url}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert httpx.get(f"{stack.api_url}/openapi.json", timeout=10).json()["paths"]["/predict"]


def test_every_port_is_published_and_listening_on_loopback_only(
    stack: ComposeStack, first_version: str
) -> None:
    """The Airflow UI (admin/admin) and /warmup (no WARMUP_TOKEN) must not face the network by default."""
    config = json.loads(stack.compose("config", "--format", "json"))
    published = {
        (name, port["published"]): port.get("host_ip", "")
        for name, service in config["services"].items()
        for port in service.get("ports", [])
    }
    expected = {("api", stack.env["API_PORT"]), ("airflow-apiserver", stack.env["AIRFLOW_PORT"])}
    expected |= {("mlflow", stack.env["MLFLOW_PORT"]), ("s3", stack.env["S3_PORT"])}
    expected |= {("prometheus", stack.env["PROMETHEUS_PORT"])}
    assert expected | {("mysql", stack.env["MYSQL_PORT"])} == set(published)
    assert set(published.values()) == {"127.0.0.1"}, published
    # What the engine really listens on, on this host (what `ss -ltn` lists).
    ports = {int(port) for _, port in published}
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports
    }
    assert {port for _, port in listening} == ports, listening
    assert {address for address, _ in listening} == {"127.0.0.1"}, listening
    # Nothing opened, nothing to warn about.
    assert "WARNING: BIND_ADDRESS" not in stack.compose("logs", "--no-color", "airflow-init")
    assert "BIND_ADDRESS=" not in stack.compose("logs", "--no-color", "api")


def test_opening_the_ports_with_default_secrets_is_warned_about_at_start(
    stack: ComposeStack, first_version: str
) -> None:
    """BIND_ADDRESS=0.0.0.0 with the default Airflow password, MySQL password and no WARMUP_TOKEN: each of
    airflow-init and the API, run as `up` runs them (`compose run`, which publishes nothing), says so."""
    opened = ["run", "--rm", "--no-deps", "-e", "BIND_ADDRESS=0.0.0.0"]
    init = stack.compose(*opened, "-T", "airflow-init", timeout=600, stderr=True)
    assert "WARNING: BIND_ADDRESS=0.0.0.0 publishes the stack's ports beyond this machine" in init
    for setting in ["AIRFLOW_ADMIN_PASSWORD", "WARMUP_TOKEN", "MYSQL_PASSWORD"]:
        assert f"set {setting}" in init, init
    # The API's own start (`python -m app`, its command), in the background until its log says it started.
    container = stack.compose(*opened, "-d", "api").split()[-1]
    try:

        def started() -> str | None:
            log = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False)
            return log.stdout + log.stderr if "Application startup complete" in log.stderr else None

        api = wait_for("the opened API's start", started, timeout=300)
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)
    assert "WARNING" in api and "BIND_ADDRESS=0.0.0.0 makes the API reachable" in api, api


def test_mlflow_keeps_runs_in_its_own_mysql_database_and_artifacts_in_the_bucket(
    stack: ComposeStack, tracked: Tracked
) -> None:
    key, body = bucket_object(stack, tracked.run_id)
    assert body.decode() == tracked.note, key
    # The metadata: in database `mlflow`, read by MLflow's own user, who reaches nothing else.
    rows = mysql_as_mlflow(stack, f"SELECT status FROM runs WHERE run_uuid = '{tracked.run_id}'")
    assert rows.split() == ["FINISHED"]
    with pytest.raises(StackError, match="denied"):
        mysql_as_mlflow(stack, "SELECT COUNT(*) FROM penguins.penguins_raw")
    # Airflow reaches the server by its service name (the Host header MLflow 3 checks).
    health = "python -c \"import urllib.request as r; print(r.urlopen('http://mlflow:5000/version').read())\""
    assert stack.compose("exec", "-T", "airflow-scheduler", "sh", "-c", health).strip()


@pytest.mark.parametrize(
    ("key", "secret", "refusal"),
    [
        ("someone-else", None, "InvalidAccessKeyId"),
        (None, "a-wrong-secret", "SignatureDoesNotMatch"),
    ],
)
def test_the_object_store_refuses_a_wrong_key(
    stack: ComposeStack, tracked: Tracked, key: str | None, secret: str | None, refusal: str
) -> None:
    with pytest.raises(ClientError) as refused:
        s3_client(stack, key, secret).list_objects_v2(Bucket=stack.env["S3_BUCKET"])
    assert refused.value.response["Error"]["Code"] == refusal
    anonymous = httpx.get(f"{stack.s3_url}/{stack.env['S3_BUCKET']}", timeout=10)
    assert anonymous.status_code == 403 and tracked.run_id not in anonymous.text


def test_the_first_training_keeps_its_files_as_objects_in_the_bucket(
    stack: ComposeStack, first_version: str
) -> None:
    """The registered version of what is served: its run's `manifest.json` and `serving.npz` and its MLflow
    model's files are objects in the bucket (listed and read with the configured keys), and the bytes there
    are the ones the tag `serving_sha256` and ./artifacts name."""
    assert stack.served_version() == first_version
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    (registered,) = client.search_model_versions(
        f"name = '{REGISTERED_MODEL}' and tags.{TAG_VERSION} = '{first_version}'"
    )
    run = client.get_run(registered.run_id)
    assert run.data.tags[TAG_VERSION] == first_version
    keys = bucket_keys(stack)
    serving = f"{proxied_key(run.info.artifact_uri)}/{RUN_SERVING_DIR}"
    assert {f"{serving}/{MANIFEST_FILE}", f"{serving}/{SERVING_FILE}"} <= keys, sorted(keys)
    folder = stack.root / "artifacts" / "models" / first_version
    stored = bucket_bytes(stack, f"{serving}/{SERVING_FILE}")
    assert sha256_bytes(stored) == registered.tags[TAG_SERVING_SHA256]
    assert stored == (folder / SERVING_FILE).read_bytes()
    assert bucket_bytes(stack, f"{serving}/{MANIFEST_FILE}") == (folder / MANIFEST_FILE).read_bytes()
    # The logged model the version was registered from (MLflow 3 keeps it beside the runs, under models/):
    # every file the server lists for it through its proxy is an object in the bucket, MLmodel among them.
    (output,) = run.outputs.model_outputs
    assert registered.source == f"models:/{output.model_id}"
    model = proxied_key(client.get_logged_model(output.model_id).artifact_location)
    listed = httpx.get(
        f"{stack.mlflow_url}/api/2.0/mlflow-artifacts/artifacts", params={"path": model}, timeout=30
    )
    assert listed.status_code == 200, listed.text
    files = {f["path"].rsplit("/", 1)[-1] for f in listed.json()["files"] if not f.get("is_dir")}
    assert "MLmodel" in files, files
    assert {f"{model}/{name}" for name in files} <= keys, sorted(keys)


def test_artifacts_belong_to_the_non_root_airflow_uid(stack: ComposeStack, first_version: str) -> None:
    artifacts = stack.root / "artifacts"
    owners = {path.relative_to(stack.root): path.stat().st_uid for path in [artifacts, *artifacts.rglob("*")]}
    assert Path("artifacts") / "models" / first_version / "model.joblib" in owners
    assert set(owners.values()) == {NON_ROOT_UID}, owners


def test_the_api_logs_predictions_to_a_volume_airflow_reads_but_cannot_change(
    stack: ComposeStack, first_version: str
) -> None:
    answer = httpx.post(
        f"{stack.api_url}/predict", json=EXAMPLE_PENGUIN, headers={"X-Request-ID": "compose-log"}, timeout=10
    )
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "compose-log"

    read_every_file = "cat /opt/predictions/*.jsonl"

    def from_airflow() -> str | None:
        try:
            lines = stack.compose("exec", "-T", "airflow-scheduler", "sh", "-c", read_every_file)
        except StackError:
            return None  # no file yet
        return next((line for line in lines.splitlines() if '"request_id":"compose-log"' in line), None)

    record = json.loads(wait_for("the record, read by Airflow", from_airflow, timeout=30))
    assert (record["species"], record["model_version"]) == (answer.json()["species"], first_version)
    # The API's files are its own (0644): Airflow, of the same group, reads them but cannot append a record.
    refused = stack.compose(
        "exec",
        "-T",
        "airflow-scheduler",
        "sh",
        "-c",
        f"echo x >> {PREDICTIONS}/$(ls {PREDICTIONS} | head -1) || echo refused",
    )
    assert "refused" in refused


def test_monitor_pipeline_loads_the_log_into_mysql_and_the_api_shows_its_report(
    stack: ComposeStack, first_version: str
) -> None:
    batch = {"instances": [EXAMPLE_PENGUIN] * MONITORED}
    headers = {"X-Request-ID": "compose-monitor"}
    answer = httpx.post(f"{stack.api_url}/predict/batch", json=batch, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    time.sleep(0.5)  # past the log's flush period
    assert stack.wait_run("monitor_pipeline", stack.trigger("monitor_pipeline")) == "success", stack.logs()
    loaded = mysql(stack, "SELECT COUNT(*) FROM penguins_predictions WHERE request_id = 'compose-monitor'")
    assert loaded.split() == [str(MONITORED)]
    report = httpx.get(f"{stack.api_url}/monitoring/drift.json", timeout=10)
    assert report.status_code == 200, report.text
    assert report.json()["model_version"] == first_version
    assert report.json()["n_predictions"] >= MONITORED
    # One penguin sent again and again is nothing like the training split: its measures are flagged.
    assert report.json()["features"]["body_mass_g"]["drifted"] is True
    page = httpx.get(f"{stack.api_url}/monitoring", timeout=10)
    assert page.status_code == 200 and "body_mass_g" in page.text
    assert list((stack.root / "artifacts" / "reports").glob("*/drift.html"))


def prediction_files(stack: ComposeStack) -> set[str]:
    return set(stack.compose("exec", "-T", "api", "ls", PREDICTIONS).split())


def test_monitor_pipeline_deletes_the_loaded_files_older_than_the_retention(
    stack: ComposeStack, first_version: str
) -> None:
    """Files the loader has loaded and nobody has touched for PREDICTIONS_RETENTION_DAYS (30) are deleted
    from the volume; the API's current file and the records already loaded stay."""
    # A restarted API writes a new file: the earlier ones are closed, and are made 40 days old.
    old = prediction_files(stack)
    assert old
    stack.compose("restart", "api")
    stack.wait_served(timeout=300)
    stack.compose(
        "exec",
        "-T",
        "api",
        "python",
        "-c",
        "import os, sys, time; old = time.time() - 40 * 86400\n"
        "for name in sys.argv[1:]: os.utime(os.path.join('/opt/predictions', name), (old, old))",
        *sorted(old),
    )
    current = prediction_files(stack) - old
    assert current, "the restarted API has no file of its own"
    time.sleep(0.5)  # past the log's flush period
    assert stack.wait_run("monitor_pipeline", stack.trigger("monitor_pipeline")) == "success", stack.logs()
    assert prediction_files(stack) == current
    # The records of the deleted files stay in the table (they are recent): only the files went.
    kept = mysql(stack, "SELECT COUNT(*) FROM penguins_predictions WHERE request_id = 'compose-monitor'")
    assert kept.split() == [str(MONITORED)]


def test_down_then_up_serves_the_same_version_without_retraining(
    stack: ComposeStack, first_version: str, tracked: Tracked, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shifted predictions above drifted: monitor_pipeline's penguins_drift Asset started a training. Let
    # it end (it may promote a challenger), so that the stack goes down at rest.
    trainings_ended(stack)
    trained = runs(stack, "train_pipeline")
    promoted = stack.wait_served(timeout=300)
    models = stack.root / "artifacts" / "models"
    kept = sorted(p.name for p in models.iterdir())
    assert first_version in kept
    stored = bucket_object(stack, tracked.run_id)
    stack.compose("down")
    stack.compose("up", "-d")
    # The restarted API answers from the promoted version at once, and no version is lost.
    assert stack.wait_served(timeout=300) == promoted
    assert set(kept) <= {p.name for p in models.iterdir()}
    # The schedulers came back with the @once run done: the restart triggered no data_pipeline, and so no
    # training from penguins_clean (an hourly monitor_pipeline may still find the drift and train again).
    wait_for("every service healthy again", lambda: all_healthy(stack), timeout=300)
    assert set(trained) <= set(runs(stack, "train_pipeline"))
    assert len(runs(stack, "data_pipeline")) == 1
    # MLflow's run, registry and objects live in named volumes: all still there.
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    assert client.get_run(tracked.run_id).data.metrics == {"accuracy": 0.99}
    assert client.get_model_version_by_alias(CHECK_MODEL, CHAMPION).version == tracked.version
    assert bucket_object(stack, tracked.run_id) == stored
    # Through the proxy: the presigned URLs the server offers name http://s3:8333, unknown outside compose.
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
    with_proxy = client.download_artifacts(tracked.run_id, CHECK_ARTIFACT, str(stack.root))
    assert Path(with_proxy).read_text() == tracked.note


def mysql(stack: ComposeStack, query: str) -> str:
    """A query run inside the mysql container with its own client (no header line)."""
    script = (
        f'MYSQL_PWD="$MYSQL_PASSWORD" mysql -N -u "$MYSQL_USER" -h 127.0.0.1 "$MYSQL_DATABASE" -e "{query}"'
    )
    return stack.compose("exec", "-T", "mysql", "sh", "-c", script)


def mysql_as_mlflow(stack: ComposeStack, query: str) -> str:
    """A query in database `mlflow` as MLflow's own user (the credentials the mysql service made it with)."""
    script = f'MYSQL_PWD="$MLFLOW_DB_PASSWORD" mysql -N -u "$MLFLOW_DB_USER" -h 127.0.0.1 mlflow -e "{query}"'
    return stack.compose("exec", "-T", "mysql", "sh", "-c", script)


def table_digest(stack: ComposeStack) -> str:
    """Row counts and a checksum of both tables."""
    return mysql(
        stack,
        "SELECT (SELECT COUNT(*) FROM penguins_raw), (SELECT COUNT(*) FROM penguins_clean); "
        "CHECKSUM TABLE penguins_raw, penguins_clean;",
    )


def test_mysql_stopped_mid_run_fails_it_cleanly_and_a_rerun_succeeds(
    stack: ComposeStack, first_version: str
) -> None:
    before = table_digest(stack)
    served = stack.served_version()  # the first version, or the one a drift-started training promoted
    run_id = stack.trigger("data_pipeline")
    wait_for(
        "data_pipeline's ingest to start",
        lambda: any(t["state"] == "running" for t in stack.task_instances("data_pipeline", run_id)),
        timeout=180,
        every=0.2,
    )
    stack.compose("stop", "mysql")
    try:
        assert stack.wait_run("data_pipeline", run_id, timeout=300) == "failed"
        failed = [
            t["task_id"] for t in stack.task_instances("data_pipeline", run_id) if t["state"] == "failed"
        ]
        assert failed, "a task must have failed on the missing database"
    finally:
        stack.compose("start", "mysql")
    wait_for("mysql healthy again", lambda: all_healthy(stack), timeout=180)
    assert table_digest(stack) == before, "the failed run changed a published table"
    # The model was not touched; after mysql is back a rerun succeeds and trains a new version.
    assert stack.served_version() == served
    trained = {run_id for run_id, _ in runs(stack, "train_pipeline")}
    rerun = stack.trigger("data_pipeline")
    assert stack.wait_run("data_pipeline", rerun, timeout=600) == "success"
    train_run_after(stack, trained)
    stack.wait_served(timeout=120, other_than=served)


class Load(threading.Thread):
    """POST /predict in a loop from a client nobody here wrote (httpx), recording every outcome in order."""

    def __init__(self, stack: ComposeStack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.outcomes: list[tuple[float, int | str, str | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and len(self.outcomes) < 200_000:
            try:
                answer = self.stack.predict(timeout=5)
                version = answer.json().get("model_version") if answer.status_code == 200 else None
                self.outcomes.append((time.monotonic(), answer.status_code, version))
            except httpx.HTTPError as err:
                self.outcomes.append((time.monotonic(), type(err).__name__, None))
                time.sleep(0.05)


def test_the_api_killed_under_load_resumes_with_the_promoted_version(stack: ComposeStack) -> None:
    promoted = stack.wait_served(timeout=60)
    load = Load(stack)
    load.start()
    try:
        time.sleep(3)
        killed_at = time.monotonic()
        stack.compose("kill", "api")
        time.sleep(2)
        stack.compose("start", "api")
        wait_for("the API serving again", lambda: stack.served_version() == promoted, timeout=300)
        time.sleep(3)
    finally:
        load.done.set()
        load.join(timeout=30)
    before = [o for o in load.outcomes if o[0] < killed_at]
    after = [o for o in load.outcomes if o[0] > killed_at]
    assert before and all(status == 200 and v == promoted for _, status, v in before)
    down = next((i for i, (_, status, _) in enumerate(after) if status != 200), None)
    assert down is not None, "the kill did not interrupt serving"
    back = next(i for i in range(down, len(after)) if after[i][1] == 200)
    resumed = after[back:]
    assert len(resumed) > 10
    # From the first answer of the restarted API on, every request succeeds with the promoted version.
    assert all(status == 200 and version == promoted for _, status, version in resumed), [
        o for o in resumed if o[1] != 200 or o[2] != promoted
    ][:5]


def prometheus(stack: ComposeStack, path: str, **params: str) -> Any:
    """The `data` of an answer of Prometheus's HTTP API, on its published port."""
    answer = httpx.get(f"{stack.prometheus_url}{path}", params=params, timeout=10)
    answer.raise_for_status()
    assert answer.json()["status"] == "success", answer.text
    return answer.json()["data"]


def api_counter(stack: ComposeStack, name: str, labels: dict[str, str]) -> float:
    """A counter's total over its series with `labels` on the API's own /metrics (all workers added)."""
    text = httpx.get(f"{stack.api_url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_prometheus_scrapes_the_api_and_evaluates_the_alert_rules(
    stack: ComposeStack, first_version: str
) -> None:
    def api_target() -> list[dict[str, Any]]:
        targets = prometheus(stack, "/api/v1/targets")["activeTargets"]
        return [t for t in targets if t["labels"]["job"] == "penguins-api" and t["health"] == "up"]

    (target,) = wait_for("the API's target up in Prometheus", api_target, timeout=180)
    assert target["scrapeUrl"] == "http://api:8000/metrics"
    for _ in range(5):
        assert stack.predict().status_code == 200
    # The request and prediction series, queried over Prometheus's HTTP API, catch up with the API's own.
    predict = {"route": "/predict", "method": "POST", "status": "200"}
    for name, labels in [("penguins_predictions_total", {}), ("http_requests_total", predict)]:
        served = api_counter(stack, name, labels)
        assert served >= 5, (name, served)
        query = f"sum({name}{{{','.join(f'{k}={v!r}' for k, v in labels.items())}}})"

        def scraped(query: str = query, served: float = served) -> float | None:
            result = prometheus(stack, "/api/v1/query", query=query)["result"]
            value = float(result[0]["value"][1]) if result else 0.0
            return value if value >= served else None

        wait_for(f"{query} in Prometheus", scraped, timeout=60)
    # The rules of prometheus/alerts.yml, group by group and alert by alert, evaluated without error.
    written = yaml.safe_load((stack.root / "prometheus" / "alerts.yml").read_text())["groups"]

    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus(stack, "/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return groups if rules and all(rule["health"] == "ok" for rule in rules) else None

    loaded = wait_for("every alert rule evaluated", evaluated, timeout=120)
    assert [(g["name"], [r["name"] for r in g["rules"]]) for g in loaded] == [
        (g["name"], [r["alert"] for r in g["rules"]]) for g in written
    ]
    # A model is served: the rule that watches for none is not firing.
    firing = {alert["labels"]["alertname"] for alert in prometheus(stack, "/api/v1/alerts")["alerts"]}
    assert "PenguinNoModelServed" not in firing


def test_the_api_holds_a_locust_run_within_the_course_limits(
    stack: ComposeStack, first_version: str, tmp_path: Path, loadtest: Any
) -> None:
    """API_MEMORY (SETTINGS) and the default CPU limit, as the engine applies them: its own record, the
    cgroup's files and `docker stats`; then Locust's users for 20 s, none failed, and nothing was killed."""
    stack.wait_served(timeout=300)
    (api,) = [c["ID"] for c in stack.containers() if c["Service"] == "api"]
    before = inspect(api)
    cpus = float(stack.env.get("API_CPUS", "1"))
    assert before["HostConfig"]["Memory"] == API_MEMORY_MIB * 2**20
    assert before["HostConfig"]["NanoCpus"] == round(cpus * 1e9)
    cgroup = cgroup_figures(api)
    assert int(cgroup["memory_limit"]) == API_MEMORY_MIB * 2**20, cgroup
    assert int(cgroup["cpu_quota"]) == round(cpus * int(cgroup["cpu_period"])), cgroup
    assert memory_usage(api)[1] == API_MEMORY_MIB
    done = loadtest(stack.api_url, tmp_path, users=20, seconds=20, spawn_rate=5)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    summary = json.loads((tmp_path / "loadtest_summary.json").read_text())
    assert summary["total"]["requests"] > 100 and summary["total"]["failures"] == 0, summary["total"]
    after = inspect(api)
    # Podman may leave OOMKilled false for a killed process (FACTS): the restarts, the start time and the
    # cgroup's own count of kills say it too.
    assert after["State"]["Status"] == "running" and after["State"]["OOMKilled"] is False
    assert after["RestartCount"] == 0 and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    kills = cgroup_figures(api)["oom_kills"]
    assert kills in (0, None) and kills == cgroup["oom_kills"], (cgroup, kills)


def test_celery_with_two_workers_runs_every_task_on_a_worker(stack: ComposeStack) -> None:
    previous = stack.wait_served(timeout=60)
    stack.files = [*stack.files, CELERY]
    stack.env["AIRFLOW_CELERY_WORKERS"] = "2"
    stack.compose("up", "-d", "--build", "--remove-orphans")
    wait_for("every service healthy under Celery", lambda: all_healthy(stack), timeout=300)
    workers = stack.hostnames("airflow-worker")
    assert len(workers) == 2
    trained = {run_id for run_id, _ in runs(stack, "train_pipeline")}
    data_run = stack.trigger("data_pipeline")
    assert stack.wait_run("data_pipeline", data_run, timeout=600) == "success"
    train_run = train_run_after(stack, trained)
    ran_on: dict[str, str] = {}
    for dag_id, run_id in [("data_pipeline", data_run), ("train_pipeline", train_run)]:
        for ti in stack.task_instances(dag_id, run_id):
            if ti["state"] == "success":
                ran_on[f"{dag_id}.{ti['task_id']}"] = ti["hostname"]
    assert len(ran_on) >= 10
    assert set(ran_on.values()) <= set(workers), (ran_on, workers)
    assert set(ran_on.values()) == set(workers), f"one worker got no work: {ran_on}"
    assert stack.wait_served(timeout=300, other_than=previous) != previous


@dataclass(frozen=True)
class Labelled:
    """A shifted colony served by `champion`, its true species sent back, and the monitor run that judged
    it."""

    champion: str
    accuracy: float
    monitor_run: str
    trained_before: frozenset[str]


@pytest.fixture(scope="module")
def labelled(stack: ComposeStack, make_shifted_colony: Callable[[int, int], pd.DataFrame]) -> Labelled:
    """Issue 21's loop, once the stack is at rest: a colony the champion mislabels through /predict/batch,
    its true species to POST /feedback by prediction_id, then one monitor_pipeline run. (Last in the
    scenario: once labels exist, a retraining is promoted only when it is better on them, which the earlier
    steps, each expecting a new version from a training on the same data, do not allow for.)"""
    trainings_ended(stack)
    champion = stack.wait_served(timeout=300)
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        served, accuracy = serve_and_label(api, make_shifted_colony(COLONY, 7))
    assert served == champion
    trained = frozenset(run_id for run_id, _ in runs(stack, "train_pipeline"))
    run_id = stack.trigger("monitor_pipeline")
    assert stack.wait_run("monitor_pipeline", run_id) == "success", stack.logs()
    return Labelled(champion, accuracy, run_id, trained)


def test_feedback_lands_in_mysql_and_the_live_accuracy_in_the_report_and_metrics(
    stack: ComposeStack, labelled: Labelled
) -> None:
    """The labels loaded into `penguins_feedback`, each matched with its prediction in `penguins_predictions`;
    the report's live part and /metrics show the champion's fall on the colony."""
    matched = mysql(
        stack,
        "SELECT f.species, COUNT(*) FROM penguins_feedback f "
        "JOIN penguins_predictions p ON p.prediction_id = f.prediction_id GROUP BY f.species",
    )
    assert matched.split() == ["Adelie", str(COLONY)]
    assert labelled.accuracy < MIN_LIVE_ACCURACY
    report = httpx.get(f"{stack.api_url}/monitoring/drift.json", timeout=10).json()
    live = report["live"]
    assert report["model_version"] == labelled.champion
    assert (live["labelled"], live["unmatched"], live["below_threshold"]) == (COLONY, 0, True), live
    assert live["accuracy"] == pytest.approx(labelled.accuracy)
    assert live["by_version"][labelled.champion]["accuracy"] == pytest.approx(labelled.accuracy)
    with httpx.Client(base_url=stack.api_url, timeout=10) as api:
        assert live_accuracy(api, labelled.champion) == pytest.approx(labelled.accuracy)


@pytest.mark.timeout(1800)
def test_the_labels_retrain_and_promote_a_better_champion_from_penguins_drift_by_themselves(
    stack: ComposeStack, labelled: Labelled
) -> None:
    """monitor_pipeline announced penguins_drift (drift and live accuracy); the scheduler starts
    train_pipeline from it; the challenger, trained with the older labels, beats the champion on the newest
    ones and is promoted; the decision is in ARTIFACTS_DIR/retraining/latest.json and on the MLflow run."""
    run_id = train_run_after(stack, set(labelled.trained_before))
    (run,) = [r for r in stack.dag_runs("train_pipeline") if r["dag_run_id"] == run_id]
    assert run["run_type"] == "asset_triggered", run
    path = f"/api/v2/dags/train_pipeline/dagRuns/{quote(run_id, safe='')}/upstreamAssetEvents"
    events = stack.airflow("GET", path)["asset_events"]
    (event,) = [e for e in events if e["source_run_id"] == labelled.monitor_run]
    assert (event["name"], event["source_task_id"]) == ("penguins_drift", "announce"), event
    assert event["extra"]["reasons"] == ["drift", "live_accuracy"], event
    decision = json.loads((stack.root / "artifacts" / RETRAINING_DIR / RETRAINING_FILE).read_text())
    assert (decision["dag_run_id"], decision["champion"], decision["promoted"]) == (
        run_id,
        labelled.champion,
        True,
    ), decision
    assert decision["live"]["candidate"] > decision["live"]["champion"], decision
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    (recorded,) = client.search_runs(
        [client.get_experiment_by_name(EXPERIMENT).experiment_id],
        f"tags.airflow_run_id = '{run_id}' and attributes.status = 'FINISHED'",
    )
    assert recorded.data.tags[TAG_VERSION] == decision["candidate"]
    assert recorded.data.tags[DECISION_TAG] == "promoted", recorded.data.tags
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    assert champion.tags[TAG_VERSION] == decision["candidate"]
    assert stack.wait_served(timeout=120, other_than=labelled.champion) == decision["candidate"]


@contextmanager
def registry_api(stack: ComposeStack) -> Iterator[str]:
    """The API image alone on the stack's network, in MODEL_REGISTRY=mlflow with no volume at all (neither
    ./artifacts nor the prediction log's): its URL on a free loopback port; removed afterwards."""
    (api,) = [c["Name"] for c in stack.containers() if c["Service"] == "api"]
    inspected = ["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", api]
    (network,) = json.loads(subprocess.run(inspected, capture_output=True, text=True, check=True).stdout)
    port = free_port()
    name = f"{stack.project}-registry-api"
    command = ["docker", "run", "-d", "--name", name, "--network", network]
    command += ["-p", f"127.0.0.1:{port}:8000", "-e", "MODEL_REGISTRY=mlflow"]
    command += ["-e", "MLFLOW_TRACKING_URI=http://mlflow:5000", "-e", "API_MODEL_POLL_SECONDS=1"]
    started = subprocess.run(
        [*command, stack.env["API_IMAGE_NAME"]], capture_output=True, text=True, check=False
    )
    try:
        assert started.returncode == 0, started.stderr
        mounts = subprocess.run(
            ["docker", "inspect", "--format", "{{json .Mounts}}", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(mounts) in (None, []), mounts
        yield f"http://127.0.0.1:{port}"
    except Exception as err:
        log = subprocess.run(
            ["docker", "logs", "--tail", "60", name], capture_output=True, text=True, check=False
        )
        raise AssertionError(f"{err}\nthe registry API's log:\n{log.stdout}{log.stderr}") from err
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def test_an_api_on_the_registry_without_the_artifacts_volume_follows_the_champion_alias(
    stack: ComposeStack,
) -> None:
    """Issue 20: MODEL_REGISTRY=mlflow serves the version the `champion` alias names, reading its files
    through MLflow's artifact proxy, and follows an alias move within seconds; the folder-mode `api` stays
    on current.json."""
    trainings_ended(stack)
    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url)
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    promoted = champion.tags[TAG_VERSION]
    others = [
        v
        for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
        if v.tags.get(TAG_VERSION) not in (None, promoted)
    ]
    assert others, "no other registered version to move the alias to (the retraining above registers one)"
    other = others[0]
    with registry_api(stack) as url:
        assert wait_for("the registry API serving", lambda: served_version(url), timeout=300) == promoted
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, other.version)
        try:
            moved = time.monotonic()
            wait_for(
                "the alias move served", lambda: served_version(url) == other.tags[TAG_VERSION], timeout=60
            )
            print(f"\nalias move -> served by the registry API in {time.monotonic() - moved:.1f} s")
            assert stack.served_version() == promoted, "the folder-mode API must follow current.json only"
        finally:
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, champion.version)
        wait_for("the alias moved back served", lambda: served_version(url) == promoted, timeout=60)


def test_down_v_leaves_nothing_behind(stack: ComposeStack) -> None:
    stack.compose("down", "-v", "--remove-orphans")
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
