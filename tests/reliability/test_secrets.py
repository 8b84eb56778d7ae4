"""Security: /warmup refuses a missing or wrong token on a real server, no error body carries a stack trace
or a secret, no credential is hard-coded in the repository beyond the documented `.env.example` defaults,
compose takes every secret from the environment, and the images run as non-root users."""

import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from reliability_kit import REPO, check_answer
from reliability_report import COVERED_ELSEWHERE

SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|api_?key|private_?key)")
# Names that only point at a secret (a file, a command printing it) or say how to make one.
NOT_A_SECRET = re.compile(r"(?i)(_file|_cmd|_path|_dir|_random_root_password)$")
SUBSTITUTION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?-([^}]*))?\}")
CREDENTIAL_URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://([^\s/:@'\"`<>]+):([^\s/@'\"`<>]+)@")
ASSIGNMENT = re.compile(r"(?im)^\s*(?:ENV\s+|export\s+|-\s+)?([A-Z][A-Z0-9_]*)\s*[:=]\s*[\"']?([^\s\"'#]*)")
PYTHON_LITERAL = re.compile(
    r"(?i)\b(\w*(?:password|passwd|secret|api_?key|token)\w*)\s*[:=]\s*[rbf]?[\"']([^\"']+)[\"']"
)
KEY_MATERIAL = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36}\b"
)
FLAGS = ("none", "yes", "no", "true", "false")
PLACEHOLDERS = {"***", "password", "<password>", "SUBSTITUTED"}
# Tests hold deliberately fake credentials (to prove they are hidden); the lock holds only hashes.
NOT_SCANNED = ("tests/", "requirements.lock", ".env.example")


def documented_defaults() -> dict[str, str]:
    """NAME -> default value, as `.env.example` documents them (commented-out examples included)."""
    text = (REPO / ".env.example").read_text()
    return dict(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", text, re.M))


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    files = []
    for name in names:
        path = REPO / name
        if name.startswith(NOT_SCANNED) or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            files.append(path)
    return files


def credential_problems(path: Path, text: str, defaults: dict[str, str]) -> list[str]:
    """Every credential in `text` that is neither taken from the environment nor a documented default."""
    allowed = {value for name, value in defaults.items() if SECRET_NAME.search(name)} | PLACEHOLDERS
    problems = []
    for name, default in SUBSTITUTION.findall(text):
        if SECRET_NAME.search(name) and default and default != defaults.get(name):
            problems.append(
                f"${{{name}:-{default}}}: default differs from .env.example ({defaults.get(name)!r})"
            )
    text = SUBSTITUTION.sub("SUBSTITUTED", text)
    for user, password in CREDENTIAL_URL.findall(text):
        if password not in allowed:
            problems.append(f"a URL with the credentials {user}:{password[:2]}…")
    problems += [f"key material {match[:12]}…" for match in KEY_MATERIAL.findall(text)]
    literals = PYTHON_LITERAL.findall(text) if path.suffix == ".py" else []
    if (
        path.suffix in ("", ".yml", ".yaml", ".sh", ".toml", ".cfg", ".ini", ".env")
        or path.name == "Makefile"
    ):
        literals += ASSIGNMENT.findall(text)
    for name, value in literals:
        secret = SECRET_NAME.search(name) and not NOT_A_SECRET.search(name)
        literal = value and not value.startswith(("$", "SUBSTITUTED", "<")) and value.lower() not in FLAGS
        if secret and literal and value not in allowed:
            problems.append(f"{name} = {value[:2]}… is hard-coded")
    return [f"{path.relative_to(REPO)}: {problem}" for problem in problems]


def test_no_credential_is_hard_coded_beyond_the_documented_defaults(figures) -> None:
    defaults = documented_defaults()
    files = tracked_text_files()
    problems = [
        p for path in files for p in credential_problems(path, path.read_text(errors="replace"), defaults)
    ]
    figures.record("security", "credential_scan", {"files_scanned": len(files), "problems": problems})
    assert len(files) > 50
    assert not problems, problems


@pytest.mark.parametrize(
    ("text", "finds"),
    [
        ('DB = "mysql+pymysql://app:hunter22@db:3306/x"', "credentials app:hu"),
        ("      MYSQL_PASSWORD: hunter22\n", "MYSQL_PASSWORD = hu"),
        ("ENV API_TOKEN=abcdef123\n", "API_TOKEN = ab"),
        ("    PASSWORD: ${MYSQL_PASSWORD:-hunter22}\n", "default differs"),
        ('secret_key = "d2f8c1e0a9"', "secret_key = d2"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "key material"),
    ],
    # Plain ids: planted credentials stay out of test names (reliability.json lists them, and is scanned).
    ids=["url", "yaml", "dockerfile_env", "compose_default", "python_literal", "private_key"],
)
def test_the_scan_finds_what_it_looks_for(text: str, finds: str) -> None:
    """The scanner can fail: each of these planted credentials is reported."""
    defaults = {"MYSQL_PASSWORD": "penguins"}
    for suffix in (".py", ".yml", ""):
        problems = credential_problems(REPO / f"planted{suffix}", text, defaults)
        if problems:
            break
    assert any(finds in problem for problem in problems), problems


def test_compose_takes_every_secret_from_the_environment() -> None:
    for name in ["docker-compose.yml", "docker-compose.celery.yml"]:
        raw = yaml.safe_load((REPO / name).read_text())
        for service, spec in raw.get("services", {}).items():
            environment = spec.get("environment") or {}
            if isinstance(environment, list):
                environment = dict(item.split("=", 1) for item in environment)
            for key, value in environment.items():
                if SECRET_NAME.search(key) and not NOT_A_SECRET.search(key):
                    assert "${" in str(value), f"{name}: {service}.{key} is not a ${{VAR}} substitution"


def effective_user(dockerfile: Path) -> str | None:
    """The USER in force where the image starts (CMD/ENTRYPOINT, else the end): None if never set."""
    user = None
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0] == "USER":
            user = words[1].split(":")[0]
        if words and words[0] in ("CMD", "ENTRYPOINT"):
            break
    return user


def test_the_images_run_as_non_root_users(figures) -> None:
    api_user = effective_user(REPO / "api" / "Dockerfile")
    # The Airflow base image runs as `airflow` (uid 50000): switching to root is fine only if switched back.
    airflow_user = effective_user(REPO / "airflow" / "Dockerfile")
    figures.record("security", "image_users", {"api": api_user, "airflow": airflow_user or "airflow (base)"})
    assert api_user is not None and api_user not in ("root", "0"), (
        "api/Dockerfile: no non-root USER before CMD"
    )
    assert airflow_user not in ("root", "0")


def test_warmup_refuses_a_missing_or_wrong_token(live_api, figures) -> None:
    attempts = {
        "no_header": {},
        "bearer_without_token": {"Authorization": "Bearer"},
        "wrong_token": {"Authorization": "Bearer wrong"},
        "token_prefix": {"Authorization": f"Bearer {live_api.token[:-1]}"},
        "token_as_basic": {"Authorization": f"Basic {live_api.token}"},
        "token_in_another_header": {"X-Warmup-Token": live_api.token},
        "token_in_query": {},
        "huge_token": {"Authorization": "Bearer " + "x" * 60_000},
    }
    statuses = {}
    for name, headers in attempts.items():
        query = {"token": live_api.token} if name == "token_in_query" else None
        answer = httpx.post(f"{live_api.url}/warmup", headers=headers, params=query, timeout=30)
        statuses[name] = answer.status_code
        assert (
            check_answer(answer.status_code, answer.text, answer.headers.get("content-type", ""), name) == []
        )
        assert answer.status_code in (401, 403, 431), (name, answer.status_code, answer.text)
        assert "changed" not in answer.text
    right = httpx.post(f"{live_api.url}/warmup", headers={"Authorization": f"Bearer {live_api.token}"})
    assert right.status_code == 200 and right.json()["model_version"] == live_api.version
    figures.record("security", "warmup_refusals", {"cases": len(attempts), "statuses": statuses})


def test_every_referenced_test_exists() -> None:
    """reliability.json points to the tests that prove an item elsewhere: they must not silently vanish."""
    for item, references in COVERED_ELSEWHERE.items():
        for reference in references:
            path, name = reference.split("::")
            assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), (
                f"{item}: {reference} is gone"
            )
