"""report.html in real headless Chromium: no console errors, no network requests, the key
parts visible, prints to PDF; a full-page screenshot is saved for a human to look at.

Driven by Playwright's sync API on the system Chromium (Debian's ``chromium`` package:
``apt-get install -y chromium``); Playwright's own browser downloads are never used. Skipped,
with the reason, when no chromium is on PATH.
Set ``PGDRILL_SCREENSHOT_DIR`` to keep the screenshots (CI artifacts).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright
from test_reports import (
    CNV_RUN,
    PASSED_RUN,
    error_drill,
    failover_drill,
    make_could_not_verify,
    make_run,
    new_drill,
    stage,
    stage_run,
)

from pgdrill.reports import render_run

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (path := shutil.which(name))), None)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium)"),
]

WIDTH = 1150

CHECKS = {
    "verdict": "document.querySelector('#overall-verdict .big').innerText",
    "overflow": "document.documentElement.scrollWidth - document.documentElement.clientWidth",
    "timelines": "[...document.querySelectorAll('svg.timeline')].map(s => Math.round(s.getBoundingClientRect().width))",
    "missing_cells": "document.querySelectorAll('svg.timeline .seg-missing').length",
    "charts": "document.querySelectorAll('svg.chart').length",
    "scripts": "document.scripts.length",
    "external": "[...document.querySelectorAll('[src],[href]')].map(e => e.getAttribute('src') || e.getAttribute('href'))"
                ".filter(u => !u.startsWith('#') && !u.startsWith('data:'))",
    # Visible text must not overlap: labels in the timeline are placed in rows.
    "label_overlaps": """(() => {
        const boxes = [...document.querySelectorAll('svg.timeline text.marker-label')].map(t => t.getBoundingClientRect());
        let n = 0;
        for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
            const a = boxes[i], b = boxes[j];
            if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) n++;
        }
        return n; })()""",
}


@dataclass
class PageVisit:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    evaluated: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        # Playwright's default already turns the sandbox off; said explicitly because Chromium
        # refuses to start as root with it on (CI runs as root).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield launched
        finally:
            launched.close()


def visit(browser: Browser, page_file: Path, screenshot: Path, pdf: Path | None = None,
          expressions: dict[str, str] | None = None) -> PageVisit:
    """Open ``page_file`` offline in a fresh context; record console errors and every request."""
    result = PageVisit()
    page_url = page_file.resolve().as_uri()
    context = browser.new_context(viewport={"width": WIDTH, "height": 900}, device_scale_factor=1)
    try:
        # Anything but the file itself is recorded (below) and refused: the test never touches
        # the network, and a leak still shows up as a request and as a failed load.
        context.route(lambda url: url != page_url and not url.startswith("data:"), lambda route: route.abort())
        page = context.new_page()
        page.on("request", lambda r: result.requests.append(r.url)
                if r.url != page_url and not r.url.startswith("data:") else None)
        page.on("requestfailed", lambda r: result.failed_requests.append(f"{r.failure} {r.url}"))
        page.on("console", lambda m: result.console_errors.append(f"{m.type}: {m.text} {m.location.get('url', '')}")
                if m.type in ("error", "assert", "warning") else None)
        page.on("pageerror", lambda e: result.console_errors.append(f"exception: {e}"))
        # networkidle: 500 ms without requests, so a lazy request or a late error is caught.
        page.goto(page_url, wait_until="networkidle")
        for name, expression in (expressions or {}).items():
            result.evaluated[name] = page.evaluate(expression)
        page.screenshot(path=screenshot, full_page=True)
        if pdf is not None:
            page.pdf(path=pdf, print_background=True, prefer_css_page_size=True)
        page.wait_for_timeout(300)  # anything printing triggered
    finally:
        context.close()
    return result


def _keep(path: Path) -> None:
    target = os.environ.get("PGDRILL_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


@pytest.mark.parametrize("case", ["passed", "could_not_verify", "stopped_early"])
def test_report_opens_offline_without_errors_or_requests(browser: Browser, tmp_path: Path, case: str) -> None:
    if case == "passed":
        results = stage(tmp_path, PASSED_RUN)
    elif case == "could_not_verify":
        render_run(stage(tmp_path, CNV_RUN))  # a history of two runs, so the charts are drawn
        results = stage(tmp_path, PASSED_RUN, make_could_not_verify)
    else:
        results = stage(tmp_path, CNV_RUN)
    html = render_run(results)["html"]
    shot = tmp_path / f"report-{case}.png"
    page = visit(browser, html, shot, pdf=tmp_path / f"report-{case}.pdf", expressions=CHECKS)
    _keep(shot)

    assert page.console_errors == []
    assert page.requests == [] and page.failed_requests == []
    checks = page.evaluated
    assert checks["scripts"] == 0 and checks["external"] == []
    assert checks["verdict"] == {"passed": "PASS", "could_not_verify": "COULD NOT VERIFY",
                                 "stopped_early": "COULD NOT VERIFY"}[case]
    assert checks["overflow"] <= 0, "the page scrolls sideways"
    assert checks["label_overlaps"] == 0
    if case == "stopped_early":
        assert checks["timelines"] == []
    else:
        assert len(checks["timelines"]) == 2 and min(checks["timelines"]) > 600
        assert checks["missing_cells"] == 1
    if case == "could_not_verify":
        assert checks["charts"] == 2
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
    pdf = (tmp_path / f"report-{case}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 3


def test_multi_path_and_error_report_opens_without_errors_or_overflow(browser: Browser, tmp_path: Path) -> None:
    """The recovery-path tables (nine columns, phases spelled out) fit the page; an error drill renders."""
    html = render_run(stage_run(tmp_path, make_run([new_drill(verdict="passed"), failover_drill(s3_lost=60, total=100),
                                                    error_drill()])))["html"]
    shot = tmp_path / "report-paths.png"
    checks = {**CHECKS,
              "paths": "document.querySelectorAll('table.paths').length",
              "worst": "document.querySelectorAll('table.paths tr.worst').length",
              "error_box": "document.querySelector('.error-box') ? "
                           "getComputedStyle(document.querySelector('.error-box')).borderTopWidth : null"}
    page = visit(browser, html, shot, expressions=checks)
    _keep(shot)
    assert page.console_errors == []
    assert page.requests == [] and page.failed_requests == []
    evaluated = page.evaluated
    assert evaluated["verdict"] == "ERROR"
    assert evaluated["overflow"] <= 0, "the page scrolls sideways"
    assert evaluated["paths"] == 2 and evaluated["worst"] == 1
    assert evaluated["error_box"] == "3px"


def test_the_checks_catch_an_external_resource(browser: Browser, tmp_path: Path) -> None:
    """Negative control: a page that fetches something, or throws, is caught, so a pass means something."""
    html = tmp_path / "leaky.html"
    html.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"><title>x</title>'
                    '<link rel="stylesheet" href="http://127.0.0.1:9/missing.css"></head>'
                    '<body><img src="http://127.0.0.1:9/missing.png">'
                    '<script>throw new Error("deliberately broken")</script></body></html>')
    page = visit(browser, html, tmp_path / "leaky.png", pdf=tmp_path / "leaky.pdf")
    assert {"http://127.0.0.1:9/missing.css", "http://127.0.0.1:9/missing.png"} <= set(page.requests)
    assert len(page.failed_requests) >= 2
    assert page.console_errors  # the failed loads are logged as errors
    assert any("deliberately broken" in e for e in page.console_errors)  # and so is an uncaught exception


def test_the_checks_catch_a_broken_report(browser: Browser, tmp_path: Path) -> None:
    """Negative control on a real report: a leaked stylesheet, image and script each trip the
    checks the passing tests rely on (the report's Content-Security-Policy blocks them, and the
    blocked attempts are still seen as requests, failed loads and console errors)."""
    html = render_run(stage(tmp_path, PASSED_RUN))["html"]
    text = html.read_text()
    leaks = ['<link rel="stylesheet" href="http://127.0.0.1:9/leak.css">', '<img src="http://127.0.0.1:9/leak.png">',
             '<script>document.querySelector("#overall-verdict .big").textContent = "BROKEN"</script>']
    assert text.count("</body>") == 1
    html.write_text(text.replace("</body>", "".join(leaks) + "</body>"))
    shot = tmp_path / "report-broken.png"
    page = visit(browser, html, shot, pdf=tmp_path / "report-broken.pdf", expressions=CHECKS)
    assert {"http://127.0.0.1:9/leak.css", "http://127.0.0.1:9/leak.png"} <= set(page.requests)
    assert len(page.failed_requests) >= 2
    assert len(page.console_errors) >= 3, page.console_errors
    assert any("inline script" in e for e in page.console_errors), page.console_errors
    checks = page.evaluated
    assert checks["scripts"] == 1
    assert {"http://127.0.0.1:9/leak.css", "http://127.0.0.1:9/leak.png"} <= set(checks["external"])
    assert checks["verdict"] == "PASS"  # the injected script was blocked and did not run
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "report-broken.pdf").read_bytes().startswith(b"%PDF")
