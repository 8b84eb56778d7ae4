"""The docs tell the truth: every command, file, setting, image and figure they name exists and is current,
and the README's curl example gets, from a freshly trained model, the very answer the README prints."""

import ast
import importlib.util
import io
import json
import re
import runpy
import tokenize
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.core.config import Settings
from penguins_pipeline.settings import PipelineSettings

REPO = Path(__file__).resolve().parents[1]
DOCS = {name: REPO / name for name in ("README.md", "MANUAL.md", "INFORME_IMPLEMENTACION.md")}
# Variables a doc may set that are not project settings: make's interpreter, Python's path, a shell variable.
NOT_SETTINGS = {"PYTHON", "PYTHONPATH", "TOKEN"}
# Written by benchmark runs: a doc may name one before it exists (scripts/bench_tables.py says so).
RESULTS_DIR = "bench/results/"


def run_file(relative: str) -> dict[str, Any]:
    """The names a file defines (a script, or another folder's conftest: neither is in a package)."""
    return runpy.run_path(str(REPO / relative), run_name=f"docs_test_{Path(relative).stem}")


# The API tests' fixtures, reused as they are: the session's model versions (tests/conftest.py), served.
API = run_file("tests/api/conftest.py")
artifacts_dir = API["artifacts_dir"]
make_client = API["make_client"]
bench_tables = SimpleNamespace(**run_file("scripts/bench_tables.py"))
screenshots = SimpleNamespace(**run_file("scripts/screenshots.py"))


def text(doc: str) -> str:
    return DOCS[doc].read_text()


def code(doc: str) -> list[str]:
    """Everything a reader would type: fenced blocks and inline code spans."""
    body = text(doc)
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", body, flags=re.M | re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"^```[^\n]*\n.*?^```", "", body, flags=re.M | re.S))
    return fenced + inline


def env_example() -> dict[str, str | None]:
    """Every variable of .env.example: its value, or None for a commented-out example line."""
    found: dict[str, str | None] = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            found[match[1]] = match[2]
        elif match := re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=.*", line):
            found.setdefault(match[1], None)
    return found


def readme_configuration() -> dict[str, list[str]]:
    """The rows of the README's configuration table: variable -> [default, read by, what it does]."""
    section = text("README.md").split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS)
def test_every_make_target_named_exists(doc: str) -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), flags=re.M))
    named = {target for snippet in code(doc) for target in re.findall(r"\bmake ([a-z][a-z-]*)", snippet)}
    assert named, f"{doc} names no make target"
    assert named <= targets, f"{doc} names targets the Makefile lacks: {sorted(named - targets)}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_and_module_named_exists(doc: str) -> None:
    paths = {
        path.rstrip("/.")
        for snippet in code(doc)
        for path in re.findall(r"(?<![\w/.])(?:\.ci|airflow|api|bench|img|scripts|tests)/[\w./*-]*", snippet)
    }
    missing = [p for p in paths if not p.startswith(RESULTS_DIR) and not list(REPO.glob(p))]
    assert missing == [], f"{doc} names files that do not exist: {sorted(missing)}"
    modules = {m for snippet in code(doc) for m in re.findall(r"python3? -m ([\w.]+)", snippet)}
    sys_path = [str(REPO / "airflow" / "include"), str(REPO / "api")]
    unknown = [m for m in modules if m != "json.tool" and importlib.util.find_spec(m) is None]
    assert unknown == [], f"{doc} runs modules that do not exist: {unknown} (path {sys_path})"


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_and_anchor_resolves(doc: str) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text(doc)):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        linked = (REPO / file) if file else DOCS[doc]
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
            if anchor not in {slug(heading) for heading in headings}:
                broken.append(target)
    assert broken == [], f"{doc} has broken links: {broken}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_variable_a_doc_sets_is_a_setting(doc: str) -> None:
    """A misspelt variable is silently ignored by the stack: the docs must not teach one."""
    known = set(env_example()) | NOT_SETTINGS
    named = {name for snippet in code(doc) for name in re.findall(r"\b([A-Z][A-Z0-9_]{2,})=", snippet)}
    assert named - known == set(), f"{doc} sets variables .env.example does not list: {named - known}"


def test_every_setting_is_in_env_example_and_the_readme_table() -> None:
    settings = {name.upper() for name in (*PipelineSettings.model_fields, *Settings.model_fields)}
    example = env_example()
    assert settings - set(example) == set(), "settings missing from .env.example"
    table = readme_configuration()
    assert set(example) - set(table) == set(), "variables of .env.example missing from the README's table"
    assert set(table) - set(example) == set(), "README table rows that .env.example does not list"
    wrong = {
        name: (table[name][0], value)
        for name, value in example.items()
        if value and f"`{value}`" not in table[name][0]
    }
    assert wrong == {}, "README defaults differing from .env.example (README cell, .env.example value)"


def test_every_image_referenced_exists_and_every_screenshot_is_used() -> None:
    referenced = {image for doc in DOCS for image in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text(doc))}
    assert referenced, "the docs show no screenshot"
    assert [image for image in referenced if not (REPO / image).is_file()] == []
    produced = {f"img/{name}" for name in screenshots.IMAGES}
    assert produced - referenced == set(), "screenshots that no doc shows"
    assert referenced - produced == set(), "images that `make screenshots` does not regenerate"


def test_the_benchmark_tables_match_the_results() -> None:
    assert bench_tables.current_block(text("README.md")) == bench_tables.block(), (
        "README.md's benchmark tables differ from bench/results/*.json: "
        ".venv/bin/python scripts/bench_tables.py --write"
    )


def readme_curl_example() -> tuple[dict[str, Any], dict[str, Any]]:
    """The body of the README's curl to /predict, and the answer printed right after it."""
    body = text("README.md")
    command = re.search(r"```bash\n(curl [^`]*?/predict[^`]*?)```", body, flags=re.S)
    assert command, "the README has no curl example of /predict"
    sent = re.search(r"-d '(\{.*?\})'", command[1], flags=re.S)
    answer = re.search(r"```json\n(.*?)```", body[command.end() :], flags=re.S)
    assert sent and answer, "the curl example lacks its -d body or the answer after it"
    return json.loads(sent[1]), json.loads(answer[1])


def close(a: Any, b: Any) -> bool:
    """Equal, with floats compared to 1e-9 (the printed answer comes from another run of the same model)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-9
    return a == b


def test_the_readme_curl_example_gets_the_readme_answer(make_client: Any, artifacts_dir: Path) -> None:
    body, printed = readme_curl_example()
    with make_client(artifacts_dir) as client:
        response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{8}", printed["model_version"])
    answer["model_version"] = printed["model_version"]  # the time of training: the only thing that differs
    assert close(answer, printed), f"the README prints another answer than the API gives:\n{answer}"


# A time, a speed-up, a percentage, a rate or a size: figures measured on one machine, stale on the next.
MEASURED = re.compile(
    r"\d\s?(ms|µs|us)\b"
    r"|\b(an?|one|\d[\d,.]*) (nano|micro|milli)?seconds? (to|for|per|a)\b"  # "a second to build"
    r"|\d\s?(x|\u00d7|times) (faster|slower|more|cheaper)\b"
    r"|\b(twice|half|three times) as (fast|slow|long|much)\b|\b(halves|doubles|triples) the\b"
    r"|\d\s?%"
    r"|\d (req|rows)/s\b"
    r"|\d (kB|KB|MB|GB|KiB|MiB|GiB)\b"  # "1.2 MB"; not a format sample such as '261.5MiB'
)


def comments_and_docstrings(path: Path) -> Iterator[tuple[int, str]]:
    source = path.read_text()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    documented = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, documented) and (docstring := ast.get_docstring(node)):
            yield getattr(node, "lineno", 1), docstring


def test_code_comments_keep_the_why_and_leave_measured_figures_to_the_report() -> None:
    """The figures live in INFORME_IMPLEMENTACION.md, with the command that measures them again."""
    found = [
        f"{path.relative_to(REPO)}:{line}: {match.group()}"
        for folder in ("api", "airflow", "scripts", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        for line, text in comments_and_docstrings(path)
        for match in MEASURED.finditer(text)
    ]
    assert found == []
