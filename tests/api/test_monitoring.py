"""/monitoring, /monitoring/drift.json and the drift and live-accuracy gauges of /metrics, over reports
written by the real monitor steps from real log files; the report page in headless Chromium with every
outside request blocked."""

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser
from prediction_logs import feedback, records, shifted, write_log
from test_page import Visit, browser  # noqa: F401  (the module's Chromium, and a page opened offline)

import penguins_contract as contract
from penguins_contract import FEEDBACK_FILE_PREFIX
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.monitoring import steps as monitor_steps


def make_report(
    artifacts_dir: Path, version: str, penguins: pd.DataFrame, seed: int, **shifts: float
) -> dict:
    """Log 120 predictions of `version` (numeric columns moved by `shifts` standard deviations), run the
    monitor's load and drift steps, return the published report."""
    work = artifacts_dir.parent / f"monitor-{seed}"
    settings = PipelineSettings(
        artifacts_dir=artifacts_dir,
        penguins_db_url=f"sqlite:///{work / 'penguins.db'}",
        predictions_dir=work / "predictions",
    )
    now = datetime.now(UTC)
    write_log(
        settings.predictions_dir, records(shifted(penguins, 120, seed, **shifts), version, end=now), now, seed
    )
    monitor_steps.load(settings)
    checked = monitor_steps.check_drift(settings, f"manual__{now.isoformat()}")
    return json.loads((Path(checked["report"]) / contract.REPORT_JSON).read_text())


# A report's `live` section as monitor_pipeline writes it (the feedback loop's formats, issue 21): one version
# with labels, one whose labels are all yet to come.
LIVE = {
    "labelled": 40,
    "unmatched": 3,
    "accuracy": 0.75,
    "min_accuracy": 0.9,
    "min_labelled": 30,
    "below_threshold": True,
    "by_version": {
        "v-served": {
            "labelled": 40,
            "accuracy": 0.75,
            "recall": {"Adelie": 0.5, "Chinstrap": 1.0, "Gentoo": None},
            "confusion": {
                "labels": ["Adelie", "Chinstrap", "Gentoo"],
                "matrix": [[10, 10, 0], [0, 20, 0], [0, 0, 0]],
            },
        },
        "v-old": {"labelled": 0, "accuracy": None, "recall": {}, "confusion": {"labels": [], "matrix": []}},
    },
}


def with_live(artifacts_dir: Path, live: dict | None) -> None:
    """The newest report with the `live` section given, or with none (None: as reports written before the
    feedback loop existed)."""
    folder = contract.latest_report(artifacts_dir)
    assert folder is not None
    report = json.loads((folder / contract.REPORT_JSON).read_text())
    report = {key: value for key, value in report.items() if key not in ("live", "retraining")}
    if live is not None:
        report |= {"live": live, "retraining": None}
    (folder / contract.REPORT_JSON).write_text(json.dumps(report))


def gauges(text: str, prefix: str = "penguin_drift_") -> dict[str, float]:
    """`name{labels}` -> value of every `prefix`* sample in a /metrics answer."""
    found = re.findall(rf"^({prefix}\w+(?:\{{[^}}]*\}})?) (\S+)$", text, flags=re.MULTILINE)
    return {name: float(value) for name, value in found}


def test_without_a_report_the_page_says_how_to_make_one(client: TestClient) -> None:
    page = client.get("/monitoring")
    assert page.status_code == 200
    assert "no drift report yet" in page.text and "make monitor" in page.text
    answer = client.get("/monitoring/drift.json")
    assert answer.status_code == 404
    assert "no drift report yet" in answer.json()["detail"]
    assert gauges(client.get("/metrics").text) == {}


def test_the_newest_report_is_served_as_written_and_exported_as_gauges(
    client: TestClient, artifacts_dir: Path, versions, clean_penguins: pd.DataFrame
) -> None:
    report = make_report(artifacts_dir, versions.main, clean_penguins, 31, flipper_length_mm=1.5)
    folder = contract.latest_report(artifacts_dir)
    assert folder is not None
    page = client.get("/monitoring")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == (folder / contract.REPORT_HTML).read_bytes()
    assert "script-src 'unsafe-inline'" in page.headers["content-security-policy"]
    answer = client.get("/monitoring/drift.json")
    assert answer.status_code == 200 and answer.json() == report

    seen = gauges(client.get("/metrics").text)
    assert seen['penguin_drift_feature_drifted{feature="flipper_length_mm"}'] == 1.0
    assert seen['penguin_drift_feature_drifted{feature="bill_length_mm"}'] == 0.0
    assert seen['penguin_drift_feature_drifted{feature="species"}'] == float(report["species"]["drifted"])
    for feature, result in report["features"].items():
        assert seen[f'penguin_drift_feature_p_value{{feature="{feature}"}}'] == pytest.approx(
            result["p_value"]
        )
        assert seen[f'penguin_drift_feature_psi{{feature="{feature}"}}'] == pytest.approx(result["psi"])
    assert seen["penguin_drift_detected"] == 1.0
    assert seen["penguin_drift_report_predictions"] == 120.0
    created = datetime.fromisoformat(report["created_at"]).timestamp()
    assert seen["penguin_drift_report_timestamp_seconds"] == pytest.approx(created)

    # A newer report, without drift, replaces it everywhere at once.
    make_report(artifacts_dir, versions.main, clean_penguins, 32)
    assert client.get("/monitoring/drift.json").json()["drifted"] is False
    seen = gauges(client.get("/metrics").text)
    assert seen["penguin_drift_detected"] == 0.0
    assert seen['penguin_drift_feature_drifted{feature="flipper_length_mm"}'] == 0.0


def test_live_accuracy_is_exported_from_a_report_that_has_it_and_only_then(
    client: TestClient, artifacts_dir: Path, versions, clean_penguins: pd.DataFrame
) -> None:
    make_report(artifacts_dir, versions.main, clean_penguins, 35)
    with_live(artifacts_dir, None)
    before = client.get("/metrics").text
    assert gauges(before, "penguin_live_") == {}  # a report written before feedback: no live gauges
    assert gauges(before)["penguin_drift_detected"] == 0.0  # and its drift gauges as ever
    with_live(artifacts_dir, LIVE)
    assert gauges(client.get("/metrics").text, "penguin_live_") == {
        'penguin_live_accuracy{model_version="v-served"}': 0.75,  # none for v-old: no labels, no accuracy
        'penguin_live_labelled{model_version="v-served"}': 40.0,
        'penguin_live_labelled{model_version="v-old"}': 0.0,
        "penguin_live_unmatched": 3.0,
        "penguin_live_below_threshold": 1.0,
    }
    with_live(artifacts_dir, {**LIVE, "below_threshold": False, "by_version": {}})
    assert gauges(client.get("/metrics").text, "penguin_live_") == {
        "penguin_live_unmatched": 3.0,
        "penguin_live_below_threshold": 0.0,
    }


def test_the_live_accuracy_of_the_newest_report_is_exported_per_model_version(
    client: TestClient, artifacts_dir: Path, versions, clean_penguins: pd.DataFrame, tmp_path: Path
) -> None:
    """30 answers of the main version, 10 labelled (8 right), one label for an unknown prediction."""
    settings = PipelineSettings(
        artifacts_dir=artifacts_dir,
        penguins_db_url=f"sqlite:///{tmp_path / 'penguins.db'}",
        predictions_dir=tmp_path / "predictions",
        min_live_labelled=10,
    )
    now = datetime.now(UTC)
    answered = records(clean_penguins.sample(30, random_state=1), versions.main, end=now)
    told = [row["species"] for row in answered[:8]] + [
        "Gentoo" if row["species"] != "Gentoo" else "Adelie" for row in answered[8:10]
    ]
    labels = feedback([*answered[:10], {"prediction_id": "0" * 32}], [*told, "Adelie"], at=now)
    write_log(settings.predictions_dir, answered, now, 1)
    write_log(settings.predictions_dir, labels, now, 2, prefix=FEEDBACK_FILE_PREFIX)
    monitor_steps.load(settings)
    monitor_steps.check_drift(settings, f"manual__{now.isoformat()}")
    text = client.get("/metrics").text
    found = re.findall(r"^(penguin_live_\w+(?:\{[^}]*\})?) (\S+)$", text, flags=re.MULTILINE)
    assert {name: float(value) for name, value in found} == {
        f'penguin_live_accuracy{{model_version="{versions.main}"}}': pytest.approx(0.8),
        f'penguin_live_labelled{{model_version="{versions.main}"}}': 10.0,
        "penguin_live_unmatched": 1.0,
        "penguin_live_below_threshold": 1.0,
    }


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        (b"{not json", "is not {"),
        (b'{"report": "../models"}', "not a report id"),
        (b'{"report": "gone"}', "does not"),
    ],
)
def test_a_broken_pointer_is_a_503_naming_it_and_metrics_still_answer(
    client: TestClient, artifacts_dir: Path, pointer: bytes, message: str
) -> None:
    (artifacts_dir / "reports").mkdir()
    (artifacts_dir / "reports" / "latest.json").write_bytes(pointer)
    for path in ("/monitoring", "/monitoring/drift.json"):
        answer = client.get(path)
        assert answer.status_code == 503
        assert "latest.json" in answer.json()["detail"] and message in answer.json()["detail"]
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and gauges(metrics.text) == {}


def test_every_worker_exports_the_same_gauges(
    api_server, artifacts_dir: Path, versions, clean_penguins: pd.DataFrame
) -> None:
    make_report(artifacts_dir, versions.main, clean_penguins, 33, body_mass_g=-1.5)
    with api_server(artifacts_dir, API_WORKERS="2") as url:
        scrapes = [gauges(httpx.get(f"{url}/metrics", timeout=10).text) for _ in range(6)]
    assert all(scrape == scrapes[0] for scrape in scrapes)
    assert scrapes[0]['penguin_drift_feature_drifted{feature="body_mass_g"}'] == 1.0
    assert len([name for name in scrapes[0] if name.startswith("penguin_drift_feature_psi")]) == 7


def test_the_report_page_shows_its_plots_offline(
    browser: Browser,  # noqa: F811
    api_server,
    artifacts_dir: Path,
    versions,
    clean_penguins: pd.DataFrame,
) -> None:
    make_report(artifacts_dir, versions.main, clean_penguins, 34, bill_depth_mm=1.5)
    with api_server(artifacts_dir) as url:
        home = Visit(browser, url)
        home.page.click("a[href='/monitoring']")
        page = home.page
        page.wait_for_selector("#distributions .main-svg", timeout=30_000)
        assert "bill_depth_mm — DRIFTED" in page.inner_text("#distributions")
        # Seven panels (four measures, island, sex, species), each with its training and recent traces.
        assert page.locator("#distributions .subplot").count() == 7
        assert page.evaluate("document.getElementById('distributions').data.length") == 14
        assert page.inner_text("tr.drifted td:first-child") == "bill_depth_mm"
        home.close()


def test_a_report_missing_its_page_is_a_503_naming_the_file(
    client: TestClient, artifacts_dir: Path, versions, clean_penguins: pd.DataFrame
) -> None:
    make_report(artifacts_dir, versions.main, clean_penguins, 35)
    folder = contract.latest_report(artifacts_dir)
    assert folder is not None
    (folder / contract.REPORT_HTML).unlink()
    answer = client.get("/monitoring")
    assert answer.status_code == 503 and "drift.html" in answer.json()["detail"]
    assert client.get("/monitoring/drift.json").status_code == 200


# Retries a run's drift report (argv: ARTIFACTS_DIR, data store URL, PREDICTIONS_DIR, run id) while the API
# (the app with its lifespan, in this process) serves the same folder. Before every rename or removal under
# reports/ (the only steps that change what a reader sees) and once at the end, it asks the API for the newest
# report; prints each step with the two status codes.
RETRIED_REPORT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from fastapi.testclient import TestClient
    from app.core.config import Settings
    from app.main import create_app
    from penguins_pipeline.core.settings import PipelineSettings
    from penguins_pipeline.monitoring import steps as monitor_steps

    artifacts, url, predictions, run_id = sys.argv[1:]
    reports = str(Path(artifacts) / "reports")
    seen, busy = [], [False]
    app = create_app(Settings(artifacts_dir=artifacts, predictions_dir=Path(predictions).parent / "api-log"))

    def ask(step):
        codes = [client.get(path).status_code for path in ("/monitoring", "/monitoring/drift.json")]
        seen.append([step, codes])

    def before(event, args):
        if busy[0] or event not in {"os.rename", "os.remove", "os.rmdir", "shutil.rmtree"}:
            return
        if not str(args[0]).startswith(reports):
            return
        busy[0] = True
        try:
            ask(f"{event} {Path(str(args[0])).name}")
        finally:
            busy[0] = False

    settings = PipelineSettings(artifacts_dir=artifacts, penguins_db_url=url, predictions_dir=predictions)
    with TestClient(app) as client:
        sys.addaudithook(before)
        monitor_steps.check_drift(settings, run_id)
        ask("done")
    print(json.dumps(seen))
    """
)


def test_a_retried_report_never_leaves_latest_json_naming_a_gone_folder(
    artifacts_dir: Path, versions, clean_penguins: pd.DataFrame
) -> None:
    report = make_report(artifacts_dir, versions.main, clean_penguins, 36)
    work = artifacts_dir.parent / "monitor-36"
    first = contract.latest_report(artifacts_dir)
    assert first is not None
    command = [sys.executable, "-c", RETRIED_REPORT, str(artifacts_dir), f"sqlite:///{work / 'penguins.db'}"]
    command += [str(work / "predictions"), report["run_id"]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    # The retry's folder renamed into place, latest.json switched, the first attempt pruned: all while served.
    assert len(seen) >= 4, seen
    assert all(codes == [200, 200] for _, codes in seen), seen
    retried = contract.latest_report(artifacts_dir)
    assert retried is not None and retried != first and not first.exists()
    assert json.loads((retried / contract.REPORT_JSON).read_text())["run_id"] == report["run_id"]
