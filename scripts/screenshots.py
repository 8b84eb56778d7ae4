"""Regenerate the documentation's screenshots, `img/*.png`, from the real stack: `make screenshots`.

Starts `scripts/run_stack.py` (what `make run` runs) on free ports with all of its state in a temporary
folder (the user's `.local/` and `artifacts/` are never touched), lets the first run train by itself as a
user's would, then drives Debian's headless Chromium through the Airflow UI (logged in as admin/admin), the
API's page and MLflow's UI, and stops the stack. Nothing is mocked: every picture is of a real run.

    make screenshots                          # or: .venv/bin/python scripts/screenshots.py --keep-state
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from free_port import free_port
from playwright.sync_api import Browser, FloatRect, Locator, Page, ViewportSize, expect, sync_playwright

from penguins_contract import registry

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Also how tests/api/test_page.py launches it (pytest puts scripts/ on its path): one set of flags for both.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
# On a busy two-core machine the Airflow UI may take more than Playwright's default 5 s to draw a page.
UI_TIMEOUT_MS = 60_000
LOGIN = {"username": "admin", "password": "admin"}
DAGS = ("data_pipeline", "train_pipeline")
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
# The only variables the stack inherits: anything else (a developer's AIRFLOW_HOME, PENGUINS_DB_URL,
# N_ESTIMATORS, ports...) would make the pictures differ from what a fresh clone shows.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
# Every image this script writes, with what it shows (the docs reference them by these names).
IMAGES = {
    "api-no-model.png": "the API page before any model exists (the 503 state)",
    "airflow-dags.png": "the Airflow DAG list after the first automatic runs",
    "airflow-data-pipeline-run.png": "a data_pipeline run, graph view",
    "airflow-train-pipeline-run.png": "a train_pipeline run, graph view",
    "airflow-task-log.png": "the log of data_pipeline's clean task",
    "api-page.png": "the API page with a model, before a prediction",
    **{f"predict-{name.lower()}.png": f"a real {name} penguin predicted, with its chart" for name in SPECIES},
    "monitoring-report.png": "monitor_pipeline's drift report at /monitoring, after shifted predictions",
    "monitoring-live.png": "the report's live accuracy, after the true species came back through /feedback",
    "mlflow-runs.png": "MLflow's experiment penguins: a run per training, with the version each registered",
    "mlflow-model.png": "MLflow's registered model penguins: its versions and the champion alias",
}
# Real penguins sent with their flippers this much longer, for the report to have a drift to show.
FLIPPER_SHIFT_MM = 15
# White space kept around a part of a page shot alone.
PART_MARGIN_PX = 16


class ScreenshotError(Exception):
    """Something the user can act on (no Chromium, a failed DAG run, a timeout): a message, no trace."""


def penguin_per_species() -> dict[str, dict[str, Any]]:
    """The first complete row of each species in palmerpenguins: real birds, not made-up values."""
    import palmerpenguins

    table = palmerpenguins.load_penguins().dropna()
    rows = {}
    for species in SPECIES:
        row = table[table["species"] == species].iloc[0]
        rows[species] = {
            "bill_length_mm": float(row["bill_length_mm"]),
            "bill_depth_mm": float(row["bill_depth_mm"]),
            "flipper_length_mm": int(row["flipper_length_mm"]),
            "body_mass_g": int(row["body_mass_g"]),
            "island": str(row["island"]),
            "sex": str(row["sex"]),
        }
    return rows


class Stack:
    """The native supervisor on free ports with its own state folder; `stop` ends it (and so its children)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.api_port, self.airflow_port, self.mlflow_port = free_port(), free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.airflow_url = f"http://127.0.0.1:{self.airflow_port}"
        self.mlflow_url = f"http://127.0.0.1:{self.mlflow_port}"
        self.output = state / "supervisor.out"
        self.process: subprocess.Popen[bytes] | None = None
        self.rest = httpx.Client(base_url=self.airflow_url, timeout=30)

    def environment(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in KEPT_ENV if name in os.environ}
        return {
            **env,
            "AIRFLOW_HOME": str(self.state / "airflow"),
            "STACK_LOG_DIR": str(self.state / "logs"),
            "ARTIFACTS_DIR": str(self.state / "artifacts"),
            "PENGUINS_DB_URL": f"sqlite:///{self.state / 'penguins.db'}",
            "PREDICTIONS_DIR": str(self.state / "predictions"),
            "STACK_MLFLOW_DIR": str(self.state / "mlflow"),
            "AIRFLOW_PORT": str(self.airflow_port),
            "API_PORT": str(self.api_port),
            "MLFLOW_PORT": str(self.mlflow_port),
            "API_HOST": "127.0.0.1",
        }

    def start(self) -> None:
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "scripts" / "run_stack.py")],
                cwd=REPO,
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C would: the supervisor stops every component and leaves no process behind."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            print(f"the supervisor (pid {self.process.pid}) did not stop in 90 s: killing it", flush=True)
            self.process.kill()
            self.process.wait()

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while not (result := check()):
            if self.process is not None and self.process.poll() is not None:
                raise ScreenshotError(f"the stack exited while waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise ScreenshotError(f"no {what} within {timeout:.0f} s; logs in {self.state / 'logs'}")
            time.sleep(1.0)
        return result

    def tail(self) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-20:])

    def api_status(self, path: str) -> int:
        try:
            return httpx.get(f"{self.api_url}{path}", timeout=5).status_code
        except httpx.TransportError:
            return 0

    def login(self) -> bool:
        try:
            response = self.rest.post("/auth/token", json=LOGIN)
        except httpx.TransportError:
            return False
        if response.status_code not in (200, 201):
            return False
        self.rest.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return True

    def latest_runs(self) -> dict[str, dict[str, Any]] | None:
        """The latest run of each DAG once all of them succeeded; a failed run stops the wait at once."""
        latest = {}
        for dag_id in DAGS:
            try:
                response = self.rest.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "-run_after"})
            except httpx.TransportError:
                return None  # a busy api-server (SQLite metadata locked by the scheduler): ask again
            if response.status_code != 200 or not response.json()["dag_runs"]:
                return None  # not parsed yet, or not run yet
            run = response.json()["dag_runs"][0]
            if run["state"] == "failed":
                raise ScreenshotError(f"{dag_id} run {run['dag_run_id']} failed; logs in {self.state}")
            if run["state"] != "success":
                return None
            latest[dag_id] = run
        return latest

    def run_dag(self, dag_id: str, timeout: float = 600) -> None:
        """Trigger a run as the UI's button does and wait for it to succeed."""
        response = self.rest.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
        response.raise_for_status()
        run_id = quote(response.json()["dag_run_id"], safe="")

        def ended() -> str | None:
            state = self.rest.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
            return state if state in ("success", "failed") else None

        if self.wait_for(f"the {dag_id} run", ended, timeout) != "success":
            raise ScreenshotError(f"{dag_id} failed; logs in {self.state}")


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise ScreenshotError(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser) -> Page:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


def save(page: Page, out: Path, name: str, *, full_page: bool = False, part: Locator | None = None) -> None:
    """The viewport, the whole page, or one `part` of a page that is not scrolled (with a margin of
    PART_MARGIN_PX around it, so its text does not touch the picture's edge), as `out/name`."""
    assert name in IMAGES, name
    page.wait_for_timeout(800)  # let transitions and fonts settle: the picture is for people
    box = part.bounding_box() if part is not None else None
    if box is None:
        page.screenshot(path=str(out / name), full_page=full_page)
    else:
        x, y = max(box["x"] - PART_MARGIN_PX, 0), max(box["y"] - PART_MARGIN_PX, 0)
        clip: FloatRect = {
            "x": x,
            "y": y,
            "width": box["x"] + box["width"] + PART_MARGIN_PX - x,
            "height": box["y"] + box["height"] + PART_MARGIN_PX - y,
        }
        page.screenshot(path=str(out / name), full_page=True, clip=clip)
    print(f"  {out / name}: {IMAGES[name]}", flush=True)


def shoot_no_model(browser: Browser, stack: Stack, out: Path) -> None:
    page = new_page(browser)
    page.goto(f"{stack.api_url}/")
    expect(page.locator("#status")).to_contain_text("train_pipeline")
    save(page, out, "api-no-model.png")
    page.close()


def shoot_airflow(browser: Browser, stack: Stack, runs: dict[str, dict[str, Any]], out: Path) -> None:
    page = new_page(browser)
    page.goto(f"{stack.airflow_url}/")
    page.get_by_label("Username").fill(LOGIN["username"])
    page.get_by_label("Password").fill(LOGIN["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)

    page.goto(f"{stack.airflow_url}/dags")
    for dag_id in DAGS:
        expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
    save(page, out, "airflow-dags.png")

    for dag_id in DAGS:
        page.goto(run_url(stack, dag_id, runs[dag_id]))
        page.get_by_label("Show Graph (Press g)").click()
        expect(page.locator(".react-flow__node").first).to_be_visible()
        save(page, out, f"airflow-{dag_id.replace('_', '-')}-run.png")

    page.goto(f"{run_url(stack, 'data_pipeline', runs['data_pipeline'])}/tasks/clean")
    page.get_by_label("Show Grid (Press g)").click()
    expect(page.get_by_text("Returned value was").first).to_be_visible()
    page.keyboard.press("w")  # wrap long log lines, so the clean step's report reads in full
    save(page, out, "airflow-task-log.png")
    page.close()


def run_url(stack: Stack, dag_id: str, run: dict[str, Any]) -> str:
    return f"{stack.airflow_url}/dags/{dag_id}/runs/{quote(run['dag_run_id'], safe='')}"


def shoot_api(browser: Browser, stack: Stack, out: Path) -> None:
    page = new_page(browser)
    page.goto(f"{stack.api_url}/")
    expect(page.locator("#penguin-form")).to_be_visible()
    save(page, out, "api-page.png")
    for species, penguin in penguin_per_species().items():
        for name, value in penguin.items():
            if name in ("island", "sex"):
                page.select_option(f"#{name}", label=str(value))
            else:
                page.fill(f"#{name}", str(value))
        page.click("#predict")
        expect(page.locator("#species")).to_have_text(species)
        expect(page.locator("#neighbors tbody tr")).to_have_count(5)
        expect(page.locator("#chart .main-svg").first).to_be_visible()
        print(f"  {species}: {penguin}", flush=True)
        save(page, out, f"predict-{species.lower()}.png", full_page=True)
    page.close()


def shoot_monitoring(browser: Browser, stack: Stack, out: Path) -> list[dict[str, str]]:
    """Shifted predictions logged by the API, a monitor_pipeline run triggered as the UI does, then its
    report; returns what the API answered, for `shoot_live` to label."""
    import palmerpenguins

    table = palmerpenguins.load_penguins().dropna().sample(150, random_state=0)
    table["flipper_length_mm"] += FLIPPER_SHIFT_MM
    instances = table[[*penguin_per_species()["Adelie"]]].to_dict("records")
    answered = httpx.post(f"{stack.api_url}/predict/batch", json={"instances": instances}, timeout=30)
    answered.raise_for_status()
    time.sleep(0.5)  # past the prediction log's flush period
    stack.run_dag("monitor_pipeline", 300)
    page = new_page(browser)
    page.goto(f"{stack.api_url}/monitoring")
    expect(page.locator("#distributions .main-svg").first).to_be_visible()
    save(page, out, "monitoring-report.png")
    page.close()
    return [
        {"prediction_id": p["prediction_id"], "species": species}
        for p, species in zip(answered.json()["predictions"], table["species"], strict=True)
    ]


def shoot_live(browser: Browser, stack: Stack, out: Path, labels: list[dict[str, str]]) -> None:
    """The true species of the shifted penguins sent to /feedback, another monitor_pipeline run, then the
    report's live-accuracy part alone. Last: the trainings its labels start (they become training rows, and
    the drift announces penguins_drift) must not decide what the MLflow pictures show."""
    httpx.post(f"{stack.api_url}/feedback", json=labels, timeout=30).raise_for_status()
    time.sleep(0.5)  # past the feedback log's flush period
    stack.run_dag("monitor_pipeline", 300)
    page = new_page(browser)
    page.goto(f"{stack.api_url}/monitoring")
    expect(page.locator("#live-status")).to_contain_text(f"on {len(labels)} labelled predictions")
    save(page, out, "monitoring-live.png", part=page.locator("#live"))
    page.close()


def shoot_mlflow(browser: Browser, stack: Stack, out: Path) -> None:
    """A second training (two runs to compare, the champion alias moved to the newer version), then MLflow's
    UI: the experiment's runs and the registered model."""
    stack.run_dag("train_pipeline")
    mlflow = httpx.Client(base_url=f"{stack.mlflow_url}/api/2.0/mlflow", timeout=30)
    experiment = mlflow.get("/experiments/get-by-name", params={"experiment_name": registry.EXPERIMENT})
    experiment_id = experiment.json()["experiment"]["experiment_id"]
    runs = mlflow.post("/runs/search", json={"experiment_ids": [experiment_id]}).json()["runs"]
    page = new_page(browser)
    page.goto(f"{stack.mlflow_url}/#/experiments/{experiment_id}/runs")
    for run in runs:
        expect(page.get_by_text(run["info"]["run_name"]).first).to_be_visible()
    page.get_by_role("button", name="Close", exact=True).click()  # the assistant's panel: room for the table
    save(page, out, "mlflow-runs.png")
    page.goto(f"{stack.mlflow_url}/#/models/{registry.REGISTERED_MODEL}")
    expect(page.get_by_text(registry.CHAMPION).first).to_be_visible()
    save(page, out, "mlflow-model.png")
    page.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "img", help="where the PNGs go (default: img/)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the first model")
    parser.add_argument("--keep-state", action="store_true", help="keep the stack's temporary state folder")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="penguins-screenshots-"))
    stack = Stack(state)
    keep = args.keep_state
    try:
        with chromium() as browser:
            print(f"Starting the stack: API {stack.api_url}, Airflow {stack.airflow_url}, state in {state}")
            stack.start()
            stack.wait_for("API /health", lambda: stack.api_status("/health") == 200, 300)
            if stack.api_status("/ready") == 503:
                shoot_no_model(browser, stack, out)
            stack.wait_for("Airflow login", stack.login, 600)
            print("Waiting for data_pipeline and train_pipeline to run by themselves...", flush=True)
            runs = stack.wait_for("successful DAG runs", stack.latest_runs, args.timeout)
            stack.wait_for("a served model", lambda: stack.api_status("/ready") == 200, 120)
            shoot_airflow(browser, stack, runs, out)
            shoot_api(browser, stack, out)
            labels = shoot_monitoring(browser, stack, out)
            shoot_mlflow(browser, stack, out)
            shoot_live(browser, stack, out, labels)
    except ScreenshotError as error:
        keep = True
        print(f"make screenshots: {error}", file=sys.stderr)
        return 1
    except BaseException:
        keep = True
        raise
    finally:
        stack.stop()
        if keep:
            print(f"State kept in {state}", flush=True)
        else:
            shutil.rmtree(state, ignore_errors=True)
    print(f"Done: {len(IMAGES)} screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
