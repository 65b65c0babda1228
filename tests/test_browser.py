"""The report in a real browser: Debian's chromium, driven by Playwright, opening the file from disk.

Checks what a unit test cannot: the inlined plotly.js runs with no console error under the page's CSP, each
chart draws one mark per variant, hovering a mark shows its figures, the variant table sorts, no request
leaves the file, and a hostile name never runs. Saves a screenshot to build/report-screenshot.png.

`make test` installs Debian's chromium where it is missing; where it still cannot be found this test is
skipped with that reason printed, never passed silently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mcbench.reports.html import write_report
from mcbench.reports.schema import Capacity
from tests.test_report import EVIL, sample_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "build" / "report-screenshot.png"


def chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("SKIPPED LOUDLY: Debian's chromium is not installed and `make test` could not install it "
                "(apt-get install -y chromium); the report was not checked in a browser")


def browser_run():
    run = sample_run()
    run.variants[2].name = EVIL  # ort-int8-dynamic: a hostile name must render as text and never run
    run.variants[0].accuracy.per_class = {"0": 1.0, "1": 0.95}
    run.variants[3].accuracy.per_class = {"0": 1.0, "1": 0.90}
    run.variants[3].capacity = Capacity(5.0, 2500.0, "closed-loop", 5000.0, 2, 0.8, 0.089)
    run.variants[1].capacity = Capacity(5.0, 3000.0, "closed-loop", 5000.0, 2, 0.8, 0.074)
    return run


def test_report_in_headless_chromium(tmp_path):
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="SKIPPED LOUDLY: pip install playwright")
    run = browser_run()
    report = write_report(run, tmp_path / "report.html")
    problems: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))

            def only_the_file(route):
                if route.request.url.startswith(("file:", "data:")):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_file)
            page.goto(report.as_uri())
            page.wait_for_function("document.querySelectorAll('div.chart .main-svg').length >= 3", timeout=20_000)

            # each chart: one mark per variant it can place, each variant named in its legend
            for chart_id in ("pareto-latency", "pareto-throughput", "load-curves"):
                chart = page.locator(f"div.chart[data-chart='{chart_id}']")
                expected = int(chart.get_attribute("data-variants"))
                points = chart.locator(".scatterlayer .trace path.point").count()
                legend = chart.locator(".legend .traces text.legendtext").all_text_contents()
                if chart_id == "load-curves":  # a curve per variant: one legend entry and 2 steps of p99 markers
                    assert (expected, len(legend), points) == (3, 3, 6), (chart_id, legend, points)
                else:
                    assert points == expected, (chart_id, points, expected)
                    assert len([t for t in legend if t != "Pareto frontier"]) == expected, legend
            assert int(page.locator("div.chart[data-chart='pareto-latency']").get_attribute("data-variants")) == 4
            legend_text = page.locator("div.chart[data-chart='pareto-latency'] .legend").text_content()
            assert EVIL in legend_text  # the hostile name is drawn as text

            # hovering a mark shows its figures
            first = page.locator("div.chart[data-chart='pareto-latency'] .scatterlayer .trace path.point").first
            first.hover(force=True)
            page.wait_for_selector("div.chart[data-chart='pareto-latency'] .hoverlayer .hovertext", timeout=5_000)
            hover = page.locator("div.chart[data-chart='pareto-latency'] .hoverlayer").text_content()
            assert "top-1 accuracy" in hover and "p99" in hover

            # the table sorts by p99, n/a last, both ways
            def p99_column() -> list[str]:
                return page.eval_on_selector_all(
                    "#variant-table tbody tr", "rows => rows.map(r => r.cells[11].textContent.trim())")

            header = page.locator("#variant-table thead th", has_text="p99").first
            header.click()
            assert p99_column() == ["0.200", "0.300", "0.600", "0.900", "n/a"]
            header.click()
            assert p99_column() == ["0.900", "0.600", "0.300", "0.200", "n/a"]
            assert header.get_attribute("aria-sort") == "descending"

            assert EVIL in page.locator("#variant-table").inner_text()  # shown as text
            page.locator("#variant-table thead th").first.click()  # back to name order for the picture
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    print(f"\nscreenshot: {SCREENSHOT}")
    assert problems == [], problems
    assert outside == [], f"the report tried to load {outside}"
