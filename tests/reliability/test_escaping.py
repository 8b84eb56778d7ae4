"""Hostile text sent through the web page comes back in the API's error message and is shown as text, never
run or parsed as HTML (headless Chromium, offline, against a real server)."""

import httpx
import pytest
from playwright.sync_api import Browser, expect
from reliability_kit import load_module

# The page tests' browser fixture and offline visit, reused as they are.
PAGE_TESTS = load_module("tests/api/test_page.py", "api_page_tests")
browser = PAGE_TESTS.browser

HOSTILE = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload=window.__pwned=3>',
    "&lt;b&gt; \u202e p\u00e9ng\u00fcin \U0001f427",
]


@pytest.mark.parametrize("text", HOSTILE, ids=["img_onerror", "script", "svg_onload", "entities_and_unicode"])
def test_hostile_text_in_a_field_is_shown_as_text(browser: Browser, live_api, figures, text: str) -> None:
    visit = PAGE_TESTS.Visit(browser, live_api.url)
    page = visit.page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    expect(page.locator("#penguin-form")).to_be_visible()
    # The select only offers the model's islands: a hostile client adds its own option, as a script could.
    page.evaluate(
        """text => { const select = document.getElementById("island");
                     const option = new Option(text, text); select.append(option); select.value = text; }""",
        text,
    )
    penguin = {name: page.input_value(f"#{name}") for name in PAGE_TESTS.EXAMPLE_PENGUIN}
    message = httpx.post(f"{live_api.url}/predict", json=penguin).json()["detail"][0]["msg"]
    assert text.split(" ")[0] in message  # the API echoes it: showing it safely is the page's job
    page.click("#predict")
    error = page.locator("#error-island")
    expect(error).to_have_text(message)  # character for character: entities not decoded, tags not parsed
    assert error.locator("*").count() == 0  # no element was created from the text
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    visit.close()
    figures.record("bad_input", f"page_{text[:12]}", {"cases": 1, "shown_as_text": True})
