"""The report in a real headless browser (the system's Chromium, driven by playwright): the page of an iPET
run and of two runs side by side load without errors, every plot renders and every expected section is
there; a full-page screenshot of each lands in the test's folder (and in $PROMPTLANG_SCREENSHOTS if set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_report import runs  # noqa: F401 — the real runs on tiny models (a module-scoped fixture)
from tinymodels import single_thread  # noqa: F401
from promptlang.cli import main

pytestmark = pytest.mark.usefixtures("report_on")  # run writes report.html here

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
PAGES = [
    # (name, the runs shown → the sections the page must have)
    ("ipet", ["ipet"], {"facts", "results", "bars", "generations", "confusion", "calibration", "loss"}),
    ("comparison", ["finetune", "ipet"], {"comparison", "facts", "results", "bars", "generations", "confusion",
                                          "calibration", "loss", "dev"}),
    ("regression", ["regression"], {"facts", "results", "bars", "scores"}),
    ("generation", ["generation"], {"facts", "results", "bars", "samples"}),
]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (skipped, with the reason, where it or playwright is missing)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (install the system's chromium package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install promptlang[test])")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def _load(browser, html: Path, screenshot: Path) -> dict:
    """Open the page with every run's section unfolded; what the browser saw, and a full-page screenshot."""
    page = browser.new_page(viewport={"width": 1240, "height": 900})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: None if request.url.startswith(("file:", "data:"))
            else problems.append(f"request to {request.url}"))
    page.goto(html.as_uri(), wait_until="load")
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    page.wait_for_function("[...document.images].every(i => i.complete)")
    seen = page.evaluate("""() => ({
        images: [...document.images].map(i => [i.alt, i.naturalWidth, i.getBoundingClientRect().width]),
        sections: [...document.querySelectorAll('[data-section]')].map(s => s.dataset.section),
        title: document.title})""")
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return {**seen, "problems": problems}


@pytest.mark.parametrize("name, shown, expected", PAGES, ids=[p[0] for p in PAGES])
def test_the_report_loads_and_renders_in_chromium(browser, runs, tmp_path, capsys, name, shown, expected):  # noqa: F811
    html = tmp_path / f"report-{name}.html"
    assert main(["report", *[str(runs[n]) for n in shown], "--out", str(html)]) == 0
    seen = _load(browser, html, tmp_path / f"report-{name}.png")
    assert seen["problems"] == []
    assert set(seen["sections"]) == expected
    assert seen["images"] and all(natural > 0 and shown_width > 100 for _, natural, shown_width in seen["images"])
    assert seen["title"] == "promptlang report: " + ", ".join(shown)
    assert (tmp_path / f"report-{name}.png").stat().st_size > 10_000
    if os.environ.get("PROMPTLANG_SCREENSHOTS"):
        folder = Path(os.environ["PROMPTLANG_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / f"report-{name}.png", folder / f"report-{name}.png")
