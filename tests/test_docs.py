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
from penguins_pipeline.core.settings import PipelineSettings

REPO = Path(__file__).resolve().parents[1]
DOCS = {name: REPO / name for name in ("README.md", "MANUAL.md", "INFORME_IMPLEMENTACION.md")}
# Variables a doc may set that are not project settings: make's interpreter, Python's path, a shell variable,
# the version `make rollback VERSION=<id>` promotes, the seed `make reliability` fuzzes with, and MLflow's own
# server switch (scripts/mlflow_server.py).
NOT_SETTINGS = {
    "PYTHON",
    "PYTHONPATH",
    "TOKEN",
    "VERSION",
    "RELIABILITY_SEED",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
}
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
    answer["model_version"] = printed["model_version"]  # the time of training: differs from run to run
    assert re.fullmatch("[0-9a-f]{32}", printed["prediction_id"])
    answer["prediction_id"] = printed["prediction_id"]  # made anew for every answer
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


# The figures the reports quote from a results file. A paragraph or list item (a nested item is one of its
# own) that names `bench/results/<file>.json` quotes that file: each of its figures must be one of the file's
# values (or the total of one of its objects, as the README's tables sum them) at the precision written.
# Figures measured otherwise stay out of such paragraphs, in their own.
RESULTS_FILE = re.compile(r"bench/results/(\w+\.json)")
FIGURE = re.compile(r"(?<![\w.#/-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w.]*\d|[A-Za-z])")
NOT_FIGURES = [
    r"`[^`]*`",  # code: commands, paths, settings
    r"\]\([^)]*\)",  # where a link points
    r"\d{4}-\d{2}-\d{2}(T[\d:]+Z?)?",  # a date
    r"\d+(\.\d+){2,}",  # a version
]


def blocks(doc: str) -> list[str]:
    """A doc's paragraphs, list items and table rows, outside fenced code and the README's generated tables
    (`test_the_benchmark_tables_match_the_results` checks those)."""
    body = re.sub(r"^```[^\n]*\n.*?^```", "", text(doc), flags=re.M | re.S)
    if bench_tables.START in body:
        body = body.replace(bench_tables.current_block(body), "")
    found: list[list[str]] = [[]]
    for line in body.splitlines():
        if not line.strip() or re.match(r"\s*([-*]|\d+\.) |#|\|", line):
            found.append([])
        found[-1].append(line.strip())
    return [" ".join(lines).strip() for lines in found if "".join(lines).strip()]


def figures(block: str) -> list[str]:
    for pattern in NOT_FIGURES:
        block = re.sub(pattern, " ", block)
    return [whole + (decimals or "") for whole, decimals in FIGURE.findall(block)]


def values(results: Any) -> Iterator[float]:
    """Every number of a results file, and the total of each object of numbers."""
    if isinstance(results, dict | list):
        items = list(results.values() if isinstance(results, dict) else results)
        numbers = [item for item in items if isinstance(item, int | float) and not isinstance(item, bool)]
        yield from numbers
        if isinstance(results, dict) and numbers and len(numbers) == len(items):
            yield sum(numbers)
        for item in items:
            yield from values(item)


def written_as(figure: str, value: float) -> bool:
    """`value` rounds to `figure` at the precision `figure` is written with."""
    decimals = len(figure.partition(".")[2])
    return abs(value - float(figure.replace(",", ""))) <= 0.5 * 10**-decimals + 1e-9


@pytest.mark.parametrize("doc", ["INFORME_IMPLEMENTACION.md", "README.md"])
def test_figures_quoted_from_a_results_file_are_that_files(doc: str) -> None:
    wrong, checked = [], set()
    for block in blocks(doc):
        names = set(RESULTS_FILE.findall(block))
        if not names:
            continue
        assert all((REPO / "bench" / "results" / name).is_file() for name in names), block[:200]
        known = [v for name in names for v in values(json.loads((REPO / "bench/results" / name).read_text()))]
        for figure in figures(block):
            checked.add(figure)
            if not any(written_as(figure, value) for value in known):
                wrong.append(f"{figure} (not in {', '.join(sorted(names))}) in: {block[:160]}...")
    assert wrong == [], f"{doc} quotes figures its results files do not hold:\n" + "\n".join(wrong)
    if doc == "INFORME_IMPLEMENTACION.md":
        assert len(checked) > 30, "the report's measured results no longer name their results files"


def test_figures_match_at_their_precision_and_only_figures_count() -> None:
    assert written_as("5,559", 5559.43) and written_as("0.45", 0.4535) and written_as("34", 34.38)
    assert not written_as("0.45", 0.46) and not written_as("1,270", 1280)
    assert figures("V2 at 5,559 req/s (p99 2.8 ms, 34 times; `make bench`, Podman 4.3.1, 2026-12-07)") == [
        "5,559",
        "2.8",
        "34",
    ]
    assert list(values({"a": {"x": 1, "y": 2.5}, "b": [4, True]})) == [1, 2.5, 3.5, 4]
