"""The playground at ``/`` and the offline docs, in a real headless Chromium.

Chromium is Debian's package (``apt-get install chromium``) driven by Playwright for
Python (``pip install playwright``; no ``playwright install``: the browser is the system's).
Every request to a host other than 127.0.0.1 is refused and fails the test, so the pages
are checked to work offline. Without Chromium or Playwright these tests fail under CI
(``CI`` set) and are skipped elsewhere.

``python -m tests.test_playground [PATH]`` serves the bundled model and regenerates the
screenshot (default ``docs/playground.png``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from models.detokenize import detokenize
from tests.serverproc import ROOT, ServerProcess, start_server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "playground-key"
TIMEOUT_MS = 20_000


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright)"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: CI must run the browser tests")
        pytest.skip(f"{missing}; CI fails here instead")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Tab:
    """A page whose requests may go to 127.0.0.1 only; records what it saw."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1200, "height": 780})
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.frames: list[dict[str, Any]] = []  # WebSocket messages from the server
        self.context.route("**/*", self._guard)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("websocket", self._watch)

    def _guard(self, route: Any) -> None:
        url = route.request.url
        if url.startswith("data:") or urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def _watch(self, websocket: Any) -> None:
        websocket.on("framereceived", lambda payload: self.frames.append(json.loads(payload)))

    def open(self, url: str) -> None:
        response = self.page.goto(url)
        assert response is not None and response.status == 200, (
            f"{url} answered {response and response.status}: is routes_ui.install(app) called?"
        )

    def text(self, element_id: str) -> str:
        return self.page.locator(f"#{element_id}").text_content() or ""

    def wait_text(self, element_id: str, value: str) -> None:
        self.page.wait_for_function(
            "([id, value]) => document.getElementById(id).textContent === value",
            arg=[element_id, value],
        )

    def connected(self) -> str:
        """Wait until the stream is open; the session id."""
        self.wait_text("status", "connected")
        return self.page.locator("#session-id").get_attribute("title") or ""

    def close(self) -> None:
        self.context.close()
        assert not self.outside, f"requests outside 127.0.0.1: {self.outside}"
        assert not self.errors, f"JavaScript errors: {self.errors}"


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    opened = Tab(browser)
    yield opened
    opened.close()


def suggestions(tab: Tab) -> list[str]:
    return tab.page.locator("#suggestions .suggestion .word").all_text_contents()


def test_typing_shows_suggestions_and_a_click_feeds_one(tab: Tab, server: ServerProcess) -> None:
    tab.open(server.url + "/")
    session_id = tab.connected()
    tab.page.locator("#text").press_sequentially("the company ")
    tab.wait_text("position", "2")
    tab.page.wait_for_function("document.querySelectorAll('#suggestions .suggestion').length == 8")
    shown = suggestions(tab)
    expected = httpx.post(
        server.url + "/v1/predict", json={"text": "the company", "k": 8, "exclude_special": True}
    ).json()["predictions"]
    assert shown == [p["word"] for p in expected]  # live, and the server's own ranking
    bars = tab.page.locator("#suggestions .bar").evaluate_all(
        "bars => bars.map(b => b.style.width)"
    )
    widths = [float(width.rstrip("%")) for width in bars]
    assert widths[0] == 100 and widths == sorted(widths, reverse=True)
    assert tab.text("latency").endswith(" ms")

    first = shown[0]
    tab.page.locator("#suggestions .suggestion").first.click()
    tab.wait_text("position", "3")
    assert tab.page.locator("#text").input_value() == detokenize(["the", "company", first]) + " "
    answer = httpx.get(f"{server.url}/v1/sessions/{session_id}").json()
    assert answer["position"] == 3  # the click fed the word to the server's session


def test_generate_streams_words(tab: Tab, server: ServerProcess) -> None:
    tab.open(server.url + "/")
    session_id = tab.connected()
    tab.page.locator("#text").press_sequentially("the market ")
    tab.wait_text("position", "2")
    tab.page.fill("#max-tokens", "6")
    tab.page.fill("#seed", "5")
    tab.page.uncheck("#stop-at-eos")
    tab.page.click("#generate")
    tab.wait_text("position", "8")
    tab.page.wait_for_function("document.getElementById('cancel').disabled")
    tokens = [f for f in tab.frames if f["type"] == "token"]
    done = [f for f in tab.frames if f["type"] == "done"]
    assert [t["position"] for t in tokens] == [3, 4, 5, 6, 7, 8]  # one message per word
    assert len(done) == 1 and done[0]["finish_reason"] == "length"
    words = [t["word"] for t in tokens]
    shown = tab.page.locator("#text").input_value()
    assert shown.rstrip(" ") == detokenize(["the", "market", *words])
    assert httpx.get(f"{server.url}/v1/sessions/{session_id}").json()["position"] == 8
    assert "done (length), 6 words" in (tab.page.locator("#log").text_content() or "")

    tab.page.locator("#text").press_sequentially("and ")  # typing goes on after it
    tab.wait_text("position", "9")


def test_editing_earlier_text_starts_over(tab: Tab, server: ServerProcess) -> None:
    tab.open(server.url + "/")
    tab.connected()
    box = tab.page.locator("#text")
    box.press_sequentially("the bank said ")
    tab.wait_text("position", "3")
    box.fill("a bank ")
    tab.wait_text("position", "2")
    feeds = [f for f in tab.frames if f["type"] == "predictions"]
    assert feeds[-1]["tokens"] == ["a", "bank"]


def test_new_session_deletes_the_old_one(tab: Tab, server: ServerProcess) -> None:
    tab.open(server.url + "/")
    first = tab.connected()
    tab.page.locator("#text").press_sequentially("the ")
    tab.wait_text("position", "1")
    tab.page.click("#new-session")
    tab.page.wait_for_function(
        "(old) => document.getElementById('session-id').title !== old"
        " && document.getElementById('status').textContent === 'connected'",
        arg=first,
    )
    assert tab.page.locator("#text").input_value() == "" and tab.text("position") == "0"
    assert httpx.get(f"{server.url}/v1/sessions/{first}").status_code == 404


def test_docs_render_offline(tab: Tab, server: ServerProcess) -> None:
    tab.open(server.url + "/docs")
    tab.page.locator(".swagger-ui .info .title", has_text="lstm-serve").wait_for()
    tab.page.locator(".opblock-summary-path", has_text="/v1/predict").first.wait_for()
    tab.open(server.url + "/redoc")
    tab.page.get_by_text("Streaming: WS /v1/stream").first.wait_for()
    tab.page.get_by_text("session_not_found").first.wait_for()


@pytest.fixture(scope="module")
def keyed_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    env = {"LSTM_SERVE_MODEL_PATH": str(tiny_checkpoint), "LSTM_SERVE_API_KEYS": KEY}
    server = start_server(env, tmp_path_factory.mktemp("keyed") / "server.log")
    try:
        yield server
    finally:
        server.stop()


def test_api_key_field(tab: Tab, keyed_server: ServerProcess) -> None:
    tab.open(keyed_server.url + "/")
    tab.page.locator("#message", has_text="unauthorized").wait_for()
    tab.page.fill("#api-key", KEY)
    tab.page.click("#connect")
    tab.connected()
    tab.page.locator("#text").press_sequentially("the ")
    tab.wait_text("position", "1")


def screenshot(out: Path) -> None:
    """Serve the bundled model, use the playground as a person would, and save a picture."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        server = start_server({}, Path(scratch) / "server.log")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                tab = Tab(browser)
                tab.open(server.url + "/")
                tab.connected()
                tab.page.locator("#text").press_sequentially("the company said ")
                tab.wait_text("position", "3")
                tab.page.locator("#suggestions .suggestion").first.click()
                tab.wait_text("position", "4")
                tab.page.fill("#max-tokens", "12")
                tab.page.fill("#seed", "7")
                tab.page.click("#generate")
                tab.wait_text("position", "16")
                tab.page.wait_for_function("document.getElementById('cancel').disabled")
                tab.page.wait_for_function(
                    "document.querySelector('#log li span').textContent.startsWith('predictions')"
                )
                tab.page.mouse.move(0, 0)
                tab.page.screenshot(path=str(out))
                tab.close()
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "playground.png"
    screenshot(target)
    print(f"wrote {target}")
