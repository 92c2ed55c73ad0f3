"""The storefront page in a real browser: Debian's headless Chromium driven by Playwright.

Type a query, see results, open a product, see similar items; the page's impression and click
events reach the event store. A screenshot is kept in ``test-artifacts/`` (or
``$SHOPRANK_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from plugin_api.http.app import create_app
from plugin_api.settings import Settings
from tests.conftest import build_fixture_index

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("SHOPRANK_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(
    os.environ.get("SHOPRANK_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}; install Debian's package: apt-get install chromium")
    pytest.importorskip("playwright")
    uvicorn = pytest.importorskip("uvicorn")
    root = build_fixture_index(tmp_path_factory.mktemp("storefront"))
    settings = Settings(data_dir=root / "data", cache_dir=root / "cache", embedder="hashing", device="cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", settings
    server.should_exit = True
    thread.join(10)


def test_search_open_product_see_similar_items(server):
    from playwright.sync_api import expect, sync_playwright

    base, settings = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/")
            # typing character by character shows suggestions; arrow down + Enter picks one
            page.locator("#q").press_sequentially("espresso mac", delay=60)
            options = page.locator("#suggestions li")
            expect(options.first).to_have_attribute("data-text", "espresso machine", timeout=15_000)
            assert page.locator("#q").get_attribute("aria-expanded") == "true"
            page.press("#q", "ArrowDown")
            expect(options.first).to_have_attribute("aria-selected", "true")
            page.press("#q", "Enter")
            expect(page.locator("#suggestions")).to_be_hidden()
            assert page.locator("#q").input_value() == "espresso machine"
            expect(page.locator("#results .card").first).to_contain_text("espresso", timeout=15_000)
            # a price in the query shows as a removable chip
            page.fill("#q", "samsung tv under 800")
            page.press("#q", "Enter")
            chip = page.locator("#chips .chip")
            expect(chip).to_have_count(1, timeout=15_000)
            assert chip.first.inner_text().startswith("under 800")
            chip.first.locator("button").click()
            expect(chip).to_have_count(0, timeout=15_000)
            assert page.locator("#q").input_value() == "samsung tv"
            page.fill("#q", "")
            # a typo: corrected, said so, with the text as typed one click away
            page.fill("#q", "thinkpda notebook ")
            page.press("#q", "Enter")
            expect(page.locator("#searched")).to_have_text("thinkpad notebook", timeout=15_000)
            cards = page.locator("#results .card")
            assert "ThinkPad" in cards.first.inner_text()
            page.click("#exact-link")
            expect(page.locator("#notice")).to_be_hidden(timeout=15_000)
            page.fill("#q", "ThinkPad notebook")
            page.press("#q", "Enter")
            expect(cards.first).to_be_visible(timeout=15_000)
            assert "ThinkPad" in cards.first.inner_text()
            assert page.locator("#brands input").count() >= 1  # brand facet
            page.check("#explain")  # "why this result" re-runs the search with explanations
            expect(page.locator("#results .why").first).to_be_visible(timeout=15_000)
            assert "bm25" in page.locator("#results .why").first.inner_text()
            page.locator("#results .title").first.click()
            similar = page.locator("#similar .card")
            expect(similar.first).to_be_visible(timeout=15_000)
            assert similar.count() >= 3
            assert page.locator("#detail-title").inner_text().startswith("Lenovo ThinkPad")
            page.screenshot(path=str(ARTIFACTS / "storefront.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "storefront.png").stat().st_size > 10_000
    deadline = time.monotonic() + 10
    actions: list[str] = []
    while time.monotonic() < deadline:
        log = settings.embedded_dir / "ubi_events.jsonl"
        actions = (
            [json.loads(line)["action_name"] for line in log.read_text().splitlines()] if log.exists() else []
        )
        if "click" in actions:
            break
        time.sleep(0.2)
    assert "impression" in actions and "click" in actions
    shutil.rmtree(settings.data_dir, ignore_errors=True)
