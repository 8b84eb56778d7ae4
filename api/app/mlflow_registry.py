"""The MLflow model registry as the API's model source (MODEL_REGISTRY=mlflow), over MLflow's REST API with
plain HTTP: the API never imports mlflow, so its start-up and memory stay as they are.

The `champion` alias of model `penguins` names a registered version; its tags give the artifact version id
(`penguins_version`) and the export's sha256 (`serving_sha256`); its run holds `manifest.json` and
`serving.npz` under `serving/`, read through the server's artifact proxy (only the server holds storage
credentials). The names are the contract's (`penguins_contract.registry`), the ones the pipeline registers
with.
"""

import re
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlparse

import httpx

from app.loader import LoadError, SourceUnavailableError
from penguins_contract import MANIFEST_FILE, SERVING_FILE, VERSION_PATTERN, registry, sha256_bytes

# A poll must not hang on a server that accepts a connection and never answers.
TIMEOUT = httpx.Timeout(10.0, connect=3.0)
ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"
RUN_PATH = "/api/2.0/mlflow/runs/get"
ARTIFACTS_PATH = "/api/2.0/mlflow-artifacts/artifacts"
PROXIED_SCHEME = "mlflow-artifacts"
SHA256 = re.compile(r"[0-9a-f]{64}")
RUN_ID = re.compile(r"[0-9A-Za-z_-]+")


class MlflowSource:
    """The `champion` alias, read at every poll; a version's files, read only when it is loaded."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        model = registry.REGISTERED_MODEL
        self.pointer = f"alias {registry.CHAMPION} of registered model {model} at {self.tracking_uri}"
        # One client for the process: its connection is reused by every poll.
        self._http = httpx.Client(base_url=self.tracking_uri, timeout=TIMEOUT)

    def promoted(self) -> "RegistryVersion | None":
        params = {"name": registry.REGISTERED_MODEL, "alias": registry.CHAMPION}
        answer = self.get(ALIAS_PATH, params)
        # No such model (404), or a model without the alias (400 "alias ... not found"): nothing promoted yet.
        if answer.status_code == 404 or (answer.status_code == 400 and "not found" in answer.text):
            return None
        found = self.json(answer, ALIAS_PATH).get("model_version")
        if not isinstance(found, dict):
            raise self.unexpected(answer, ALIAS_PATH)
        tags = {tag.get("key"): tag.get("value") for tag in found.get("tags") or [] if isinstance(tag, dict)}
        named = f"{self.pointer} names {registry.REGISTERED_MODEL} version {found.get('version')}"
        version, sha256, run_id = (
            tags.get(registry.TAG_VERSION),
            tags.get(registry.TAG_SERVING_SHA256),
            found.get("run_id"),
        )
        if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
            raise LoadError(
                "registry",
                f"{named}, whose tag {registry.TAG_VERSION} is {version!r}, not a version id: "
                "point the alias at a version train_pipeline registered",
            )
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            raise LoadError(
                "registry", f"{named}, which has no sha256 in its tag {registry.TAG_SERVING_SHA256}"
            )
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise LoadError("registry", f"{named}, which has no run to read its files from")
        return RegistryVersion(self, version, f"{found.get('version')}", run_id, sha256)

    def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        try:
            return self._http.get(path, params=params)
        except httpx.RequestError as err:
            raise SourceUnavailableError(
                "registry_unreachable",
                f"the MLflow tracking server at {self.tracking_uri} does not answer ({err!r}): start it "
                "(`make run` does) or set MLFLOW_TRACKING_URI to its address",
            ) from err

    def json(self, answer: httpx.Response, path: str) -> dict[str, Any]:
        """The JSON object of a 200 answer; SourceUnavailableError for anything else (retried next poll)."""
        try:
            body = answer.json() if answer.status_code == 200 else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self.unexpected(answer, path)
        return body

    def unexpected(self, answer: httpx.Response, path: str) -> SourceUnavailableError:
        return SourceUnavailableError(
            "registry_error",
            f"the MLflow tracking server at {self.tracking_uri} answered {path} with {answer.status_code}: "
            f"{answer.text[:300]!r} (is MLFLOW_TRACKING_URI an MLflow server, reachable by this Host?)",
        )


class RegistryVersion:
    """A registered version's files, under `serving/` in its run's artifacts."""

    def __init__(self, source: MlflowSource, version: str, number: str, run_id: str, sha256: str) -> None:
        self.version = version
        self.where = (
            f"version {version} ({registry.REGISTERED_MODEL} version {number} in MLflow, run {run_id})"
        )
        self._source = source
        self._run_id = run_id
        self._sha256 = sha256

    def manifest_bytes(self) -> bytes:
        return self._download(MANIFEST_FILE)

    def export_bytes(self) -> bytes:
        data = self._download(SERVING_FILE)
        if sha256_bytes(data) != self._sha256:
            raise LoadError(
                "checksum",
                f"{self.where}: {SERVING_FILE} does not match the sha256 in the version's tag "
                f"{registry.TAG_SERVING_SHA256} ({len(data)} bytes): corrupt or replaced artifact",
            )
        return data

    @cached_property
    def _serving_path(self) -> str:
        """The run's `serving/` folder behind the artifact proxy, from the run's artifact URI
        (`mlflow-artifacts:/<experiment>/<run>/artifacts`)."""
        answer = self._source.get(RUN_PATH, {"run_id": self._run_id})
        if answer.status_code == 404:
            raise LoadError("registry", f"{self.where}: its run does not exist (deleted?)")
        run = self._source.json(answer, RUN_PATH).get("run")
        info = run.get("info") if isinstance(run, dict) else None
        uri = info.get("artifact_uri") if isinstance(info, dict) else None
        parsed = urlparse(uri) if isinstance(uri, str) else None
        if parsed is None or parsed.scheme != PROXIED_SCHEME:
            raise LoadError(
                "registry",
                f"{self.where}: its run keeps its artifacts at {uri!r}, not behind the server's artifact "
                "proxy: run the tracking server with --serve-artifacts",
            )
        return f"{ARTIFACTS_PATH}/{quote(parsed.path.strip('/'))}/{registry.RUN_SERVING_DIR}"

    def _download(self, name: str) -> bytes:
        path = f"{self._serving_path}/{name}"
        answer = self._source.get(path)
        if answer.status_code == 404:
            raise LoadError("missing_file", f"{self.where}: its run has no {registry.RUN_SERVING_DIR}/{name}")
        if answer.status_code != 200:
            raise self._source.unexpected(answer, path)
        return answer.content
