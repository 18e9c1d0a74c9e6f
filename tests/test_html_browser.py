"""The HTML report in a real headless Chromium: scored lines are shaded by risk and hovering one
shows a tooltip with its risk and latents."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from review_doubles import KeywordScorer

from bot.config import ReviewConfig
from bot.context import working_tree_reader
from bot.formats import format_report
from bot.render import make_environment
from bot.review import review

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("PTTRUST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")


def test_hover_shows_risk_and_latents(tmp_path):
    report = review(
        (ROOT / "examples" / "example.diff").read_bytes(), working_tree_reader(ROOT), KeywordScorer(), ReviewConfig()
    )
    page_file = tmp_path / "report.html"
    page_file.write_text(format_report(report, "html", make_environment()), encoding="utf-8")

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            row = page.locator('tr.scored[data-line="19"]').first
            tip = row.locator(".tip")
            assert not tip.is_visible()

            # shading: a riskier line is redder (higher alpha) than a low-risk one
            def alpha(locator):
                color = locator.evaluate("e => getComputedStyle(e).backgroundColor")
                return float(color.rstrip(")").split(",")[3]) if color.startswith("rgba") else 1.0

            assert alpha(row) > alpha(page.locator('tr.scored[data-line="20"]').first) > 0

            row.hover()
            tip.wait_for(state="visible", timeout=5000)
            text = tip.inner_text()
            assert "risk 93%" in text
            assert "latent #7" in text and "test-double keyword <b>" in text
            assert "contribution +0.430" in text
        finally:
            browser.close()


# The structure a reviewer relies on, element by element (what the screenshot must show).
STRUCTURE = {
    "h2#findings": 1,
    "table.findings tr.finding-item": 2,  # one shown finding, one left out by the cap
    "table.findings a[href^='#f']": 2,
    ".legend": 1,
    "tr.reasons": 1,  # the shown finding's reasons, inline under its peak line
    "tr.unscored": 1,  # the closing `)`: not code, not scored
    "td.mark": None,  # every code row has its +/- marker cell
    "td.code span.k": None,  # pygments keyword tokens (`if`, `return`, ...)
}


def test_structure_links_highlighting_and_reasons_without_hover(tmp_path):
    cfg = ReviewConfig(max_comments=1, fail_above=0.9)
    report = review(
        (ROOT / "examples" / "example.diff").read_bytes(),
        working_tree_reader(ROOT),
        KeywordScorer(candidates=True),
        cfg,
        model_name="keyword-test-double",
    )
    page_file = tmp_path / "report.html"
    page_file.write_text(format_report(report, "html", make_environment()), encoding="utf-8")

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_file.as_uri())
            for selector, count in STRUCTURE.items():
                found = page.locator(selector).count()
                assert found == count if count is not None else found > 0, (selector, found)

            # the findings list comes before the first file, at the top of the page
            top = page.locator("table.findings").bounding_box()["y"]
            assert top < page.locator("h2#file-1").bounding_box()["y"] and top < 900
            assert page.locator(".legend").is_visible()

            # reasons are visible without hovering anything
            reasons = page.locator("tr.reasons").first
            assert reasons.is_visible()
            assert "What to check: test-double keyword <b>" in reasons.inner_text()
            assert "riskiest of 12 added lines scored" in reasons.inner_text()

            # a keyword is coloured by pygments, unlike plain text
            kw = page.locator("td.code span.k").first
            plain = page.locator("tr.hunk td.code").first
            colour = "e => getComputedStyle(e).color"
            assert kw.evaluate(colour) != plain.evaluate(colour)

            # +/- markers, and the unscored line says so instead of a number
            marks = set(page.locator("td.mark").all_inner_texts())
            assert {"+", "\u2212"} <= marks
            assert page.locator("tr.unscored td.risk").inner_text() == "not scored"

            # the link of the finding jumps to its line in the diff
            page.locator("table.findings a").first.click()
            page.wait_for_function("location.hash === '#f1-L19'")
            target = page.locator("#f1-L19")
            assert target.evaluate(
                "e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight }"
            )

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        finally:
            browser.close()
