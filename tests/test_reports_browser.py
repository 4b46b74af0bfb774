"""report.html in real headless Chromium: no console errors, no network requests, the key
parts visible, prints to PDF; a full-page screenshot is saved for a human to look at.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``) and the
``websocket-client`` Python package; skipped with the reason when either is missing.
Set ``PGDRILL_SCREENSHOT_DIR`` to keep the screenshots (CI artifacts).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from chromium_cdp import find_chromium, visit
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

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium)"),
]
websocket = pytest.importorskip("websocket", reason="websocket-client not installed (pip install websocket-client)")

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


def _keep(path: Path) -> None:
    target = os.environ.get("PGDRILL_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


@pytest.mark.parametrize("case", ["passed", "could_not_verify", "stopped_early"])
def test_report_opens_offline_without_errors_or_requests(tmp_path: Path, case: str) -> None:
    assert CHROMIUM is not None
    if case == "passed":
        results = stage(tmp_path, PASSED_RUN)
    elif case == "could_not_verify":
        render_run(stage(tmp_path, CNV_RUN))  # a history of two runs, so the charts are drawn
        results = stage(tmp_path, PASSED_RUN, make_could_not_verify)
    else:
        results = stage(tmp_path, CNV_RUN)
    html = render_run(results)["html"]
    shot = tmp_path / f"report-{case}.png"
    page = visit(CHROMIUM, html, tmp_path / "profile", shot, pdf=tmp_path / f"report-{case}.pdf",
                 expressions=CHECKS, log=tmp_path / "chromium.log")
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


def test_multi_path_and_error_report_opens_without_errors_or_overflow(tmp_path: Path) -> None:
    """The recovery-path tables (nine columns, phases spelled out) fit the page; an error drill renders."""
    assert CHROMIUM is not None
    html = render_run(stage_run(tmp_path, make_run([new_drill(verdict="passed"), failover_drill(s3_lost=60, total=100),
                                                    error_drill()])))["html"]
    shot = tmp_path / "report-paths.png"
    checks = {**CHECKS,
              "paths": "document.querySelectorAll('table.paths').length",
              "worst": "document.querySelectorAll('table.paths tr.worst').length",
              "error_box": "document.querySelector('.error-box') ? "
                           "getComputedStyle(document.querySelector('.error-box')).borderTopWidth : null"}
    page = visit(CHROMIUM, html, tmp_path / "profile", shot, expressions=checks, log=tmp_path / "chromium.log")
    _keep(shot)
    assert page.console_errors == []
    assert page.requests == [] and page.failed_requests == []
    evaluated = page.evaluated
    assert evaluated["verdict"] == "ERROR"
    assert evaluated["overflow"] <= 0, "the page scrolls sideways"
    assert evaluated["paths"] == 2 and evaluated["worst"] == 1
    assert evaluated["error_box"] == "3px"


def test_the_checks_catch_an_external_resource(tmp_path: Path) -> None:
    """Negative control: a page that fetches something is caught, so a pass means something."""
    assert CHROMIUM is not None
    html = tmp_path / "leaky.html"
    html.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"><title>x</title>'
                    '<link rel="stylesheet" href="http://127.0.0.1:9/missing.css"></head>'
                    '<body><img src="http://127.0.0.1:9/missing.png"></body></html>')
    page = visit(CHROMIUM, html, tmp_path / "profile", tmp_path / "leaky.png")
    assert any("127.0.0.1:9" in url for url in page.requests)
    assert page.console_errors  # the failed loads are logged as errors
