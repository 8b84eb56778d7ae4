"""The web page and the docs pages in headless Chromium (Debian's), with every request outside localhost
blocked."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright
from screenshots import CHROMIUM, CHROMIUM_ARGS  # Chromium as `make screenshots` launches it

from app.schemas import EXAMPLE_PENGUIN
from penguins_pipeline.training import artifacts

ROOT = Path(__file__).resolve().parents[2]
HTTP_STATUS_NOTICE = "Failed to load resource: the server responded with a status of"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "apt-get install -y chromium (the CI script does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """A page opened offline: anything not on localhost is aborted and recorded, like console errors."""

    def __init__(self, browser: Browser, url: str, width: int = 1200, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._only_localhost)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", self._console)
        self.page.goto(url)

    def _console(self, message: ConsoleMessage) -> None:
        # The browser itself logs every 4xx/5xx answer; the page handles those, so they are not errors.
        if message.type == "error" and not message.text.startswith(HTTP_STATUS_NOTICE):
            self.errors.append(message.text)

    def _only_localhost(self, route: Route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def fill(self, penguin: dict) -> None:
        for name, value in penguin.items():
            if name in ("island", "sex"):
                self.page.select_option(f"#{name}", label=str(value))
            else:
                self.page.fill(f"#{name}", str(value))

    def close(self) -> None:
        assert self.outside == [], self.outside
        assert self.errors == [], self.errors
        self.context.close()


def test_predict_from_the_prefilled_form(browser: Browser, server: str) -> None:
    visit = Visit(browser, server)
    page = visit.page
    expect(page.locator("#penguin-form")).to_be_visible()
    assert float(page.input_value("#bill_length_mm")) > 0  # a real penguin, ready to submit
    assert page.locator("#island option").all_text_contents() == ["Biscoe", "Dream", "Torgersen"]
    assert page.locator("#sex option").all_text_contents() == ["female", "male"]
    prefilled = {name: page.input_value(f"#{name}") for name in EXAMPLE_PENGUIN}
    expected = httpx.post(f"{server}/predict", json=prefilled).json()
    page.click("#predict")
    expect(page.locator("#species")).to_have_text(expected["species"])
    expect(page.locator("#neighbors tbody tr")).to_have_count(5)
    # The prefilled penguin is a real training penguin: it is its own nearest neighbour.
    expect(page.locator("#neighbors tbody tr").first.locator("td").last).to_have_text("0.000")
    expect(page.locator("#probabilities .probability")).to_have_count(3)
    # Plotly drew the chart: training points of three species, the neighbours and the query point.
    expect(page.locator("#chart .main-svg").first).to_be_visible()
    assert page.locator("#chart .scatterlayer .trace").count() == 5
    assert page.locator("#chart .point").count() > 200
    visit.close()


def test_the_original_example_shows_its_warnings(browser: Browser, server: str) -> None:
    visit = Visit(browser, server)
    expect(visit.page.locator("#penguin-form")).to_be_visible()
    visit.fill({**EXAMPLE_PENGUIN, "sex": "female"})
    visit.page.click("#predict")
    expect(visit.page.locator("#warnings li").first).to_contain_text("near-tie")
    visit.close()


def test_an_invalid_value_shows_its_message_next_to_the_field(browser: Browser, server: str) -> None:
    visit = Visit(browser, server)
    page = visit.page
    expect(page.locator("#penguin-form")).to_be_visible()
    page.fill("#bill_length_mm", "4500")
    page.click("#predict")
    expect(page.locator("#error-bill_length_mm")).to_contain_text("less than or equal to 80")
    expect(page.locator("#bill_length_mm")).to_have_attribute("aria-invalid", "true")
    page.fill("#bill_length_mm", "")
    page.fill("#body_mass_g", "heavy")
    page.click("#predict")
    expect(page.locator("#error-bill_length_mm")).to_have_text("Enter a number.")
    expect(page.locator("#error-body_mass_g")).to_have_text("Enter a number.")
    expect(page.locator("#result")).to_be_hidden()
    visit.close()


def test_random_penguin_fills_realistic_values_and_predicts(browser: Browser, server: str) -> None:
    visit = Visit(browser, server)
    page = visit.page
    expect(page.locator("#penguin-form")).to_be_visible()
    page.click("#random")
    expect(page.locator("#neighbors tbody tr")).to_have_count(5)
    assert 30 < float(page.input_value("#bill_length_mm")) < 62
    assert 2500 < float(page.input_value("#body_mass_g")) < 6600
    visit.close()


def test_usable_at_phone_width(browser: Browser, server: str) -> None:
    visit = Visit(browser, server, width=375, height=740)
    page = visit.page
    expect(page.locator("#penguin-form")).to_be_visible()
    page.click("#predict")
    expect(page.locator("#neighbors tbody tr")).to_have_count(5)
    expect(page.locator("#chart .main-svg").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling of the page
    assert page.locator("#predict").bounding_box()["width"] > 40
    visit.close()


def test_without_a_model_the_page_says_what_to_do_then_comes_alive(
    browser: Browser, tmp_path: Path, versions, api_server
) -> None:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    with api_server(folder) as url:
        visit = Visit(browser, url)
        page = visit.page
        expect(page.locator("#status")).to_contain_text("run train_pipeline")
        expect(page.locator("#penguin-form")).to_be_hidden()
        shutil.copytree(versions.folder / "models", folder / "models")
        artifacts.promote(folder, versions.main)
        # The page polls every 5 s; the server's first load also imports scikit-learn (slow on a busy CI).
        expect(page.locator("#penguin-form")).to_be_visible(timeout=90_000)
        expect(page.locator("#status")).to_be_hidden()
        visit.close()


def test_swagger_ui_renders_every_operation_offline(browser: Browser, server: str) -> None:
    """FastAPI's own /docs loads Swagger UI from a CDN: blank offline."""
    visit = Visit(browser, f"{server}/docs")
    page = visit.page
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Penguin species API")
    predict = page.locator(".opblock-post", has=page.locator(".opblock-summary-path", has_text="/predict"))
    expect(predict.first).to_be_visible()
    assert page.locator(".opblock").count() >= 8  # every documented operation, not only /predict
    predict.first.locator(".opblock-summary").click()
    expect(predict.first.locator(".opblock-body")).to_contain_text("Request body")
    expect(predict.first.locator(".opblock-body")).to_contain_text('"island": "Dream"')
    visit.close()


def test_redoc_renders_every_operation_offline(browser: Browser, server: str) -> None:
    visit = Visit(browser, f"{server}/redoc")
    page = visit.page
    expect(page.locator("h1").first).to_contain_text("Penguin species API")
    expect(page.get_by_role("button", name="post /predict", exact=True)).to_be_attached()
    assert page.locator("li[data-item-id^='tag/']").count() >= 8  # the sidebar lists every operation
    visit.close()


def test_no_cdn_in_the_api_sources() -> None:
    """The hook of issue #13: no address of a CDN anywhere under api/."""
    found = subprocess.run(
        [
            "git",
            "grep",
            "-lE",
            r"https?://(cdn\.|cdnjs\.|unpkg\.com|cdn\.jsdelivr|cdn\.plot\.ly)",
            "--",
            "api",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1 and found.stdout == "", found.stdout  # 1: git grep found nothing
