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
