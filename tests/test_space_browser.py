"""The Space end to end in real headless Chromium (Debian's /usr/bin/chromium through Python
playwright; `playwright install` is never needed).

Every request the page makes is recorded: the Space must load nothing from outside the
server (no CDN fonts, no analytics). The test saves a screenshot to its tmp folder; with
``VOCABSWAP_UPDATE_SCREENSHOT=1`` it also writes it to ``docs/space.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.test_space import UK_TEXT, build_adapted_folder, free_port, load_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "space.png"
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def space(tmp_path_factory, splade_path):
    app = load_app()
    source = str(splade_path)
    adapted = str(build_adapted_folder(tmp_path_factory.getbasetemp() / "space-models"))
    demo = app.build_demo(source, adapted)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield app, f"http://127.0.0.1:{port}/", source, adapted
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "install Debian's chromium: apt-get install -y chromium (scripts/setup.sh does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_space_in_chromium(space, browser, tmp_path):
    app, url, source, adapted = space
    requests: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")

    def record(route):
        requests.append(route.request.url)
        host = urlparse(route.request.url).hostname
        if urlparse(route.request.url).scheme in ("http", "https", "ws", "wss") and host not in LOCAL_HOSTS:
            route.abort()
        else:
            route.continue_()

    context.route("**/*", record)
    page = context.new_page()
    page.on("websocket", lambda ws: requests.append(ws.url))
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(url)
    # Both models load when the page opens; the status names them and the record.
    page.wait_for_selector("#model-status:has-text('Adapted')")
    status = page.inner_text("#model-status")
    assert "BertForMaskedLM" in status and "made by hf_vocabswap with fvt" in status

    # Tokenization before and after.
    page.fill("#tok-text textarea", UK_TEXT)
    page.click("#tok-run")
    page.wait_for_selector("#tok-adapted .vs-tok")
    page.wait_for_selector("#tok-source .vs-tok")
    src_html, ada_html, rows = app.tokenize(UK_TEXT, source, adapted)
    from tests.test_space import span_texts

    for elem, fragment in (("#tok-source", src_html), ("#tok-adapted", ada_html)):
        spans = page.locator(f"{elem} .vs-tok")
        assert spans.count() == len(span_texts(fragment)) > 0
        assert spans.all_inner_texts() == span_texts(fragment)
        assert page.inner_text(f"{elem} .vs-line").replace("\n", "") == UK_TEXT
        assert "##" not in page.inner_text(f"{elem} .vs-line")
        # Neighbouring tokens get different colours.
        colours = [s.evaluate("e => getComputedStyle(e).backgroundColor") for s in spans.all()[:4]]
        assert all(a != b for a, b in zip(colours, colours[1:]))
    stats = page.inner_text("#tok-stats")
    for label, before, after in rows:
        assert label in stats and before in stats and after in stats
    n_before, n_after = int(rows[0][1].replace(",", "")), int(rows[0][2].replace(",", ""))
    assert n_after < n_before
    assert f"{n_after} tokens" in page.inner_text("#tok-adapted")
    shot = tmp_path / "space.png"
    page.screenshot(path=str(shot), full_page=True)

    # Raw vocabulary strings on request.
    page.check("#tok-raw input")
    page.wait_for_function("() => document.querySelector('#tok-adapted .vs-line').innerText.includes('##')")
    page.uncheck("#tok-raw input")
    page.wait_for_function("() => !document.querySelector('#tok-adapted .vs-line').innerText.includes('##')")

    # Fill-mask before and after, with the generic placeholder.
    page.get_by_role("tab", name="Fill-mask / next token").click()
    page.fill("#mask-text textarea", "The capital of France is <mask>.")
    page.click("#mask-run")
    page.wait_for_selector("#mask-note:has-text('Adapted')")
    before, after, note = app.fill_mask("The capital of France is <mask>.", source, adapted, 5)
    for elem, preds in (("#mask-source", before), ("#mask-adapted", after)):
        page.wait_for_selector(f"{elem} .confidence-set")
        text = page.inner_text(elem)
        for label, p in preds.items():
            assert label in text and f"{round(100 * p)}%" in text, (label, text)
    assert "⚠️" not in page.inner_text("#mask-note")
    page.screenshot(path=str(tmp_path / "space-fill-mask.png"), full_page=True)

    # Explain a token from the saved record.
    page.get_by_role("tab", name="Explain a token").click()
    page.fill("#explain-token textarea, #explain-token input", "столиця")
    page.click("#explain-run")
    page.wait_for_selector("#explain-out table")
    explained = page.inner_text("#explain-out")
    assert "Method fvt" in explained and ("combined" in explained or "copied" in explained)

    # A model that cannot be loaded gives a readable message, not a stack trace.
    page.fill("#adapted-model textarea, #adapted-model input", "no/such-model")
    page.click("#load-models")
    page.wait_for_selector("#model-status:has-text('Cannot load the adapted model')")
    assert "Traceback" not in page.inner_text("#model-status")
    context.close()

    assert not errors, errors
    outside = sorted({u for u in requests if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname not in LOCAL_HOSTS})
    assert not outside, f"the page requested hosts outside localhost: {outside}"
    assert requests and shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("VOCABSWAP_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
