"""Drill reports for audit (issue 7): report.html, junit.xml, results.json.sha256 and
``reports/history.jsonl``, all rendered from a run's ``results.json``.

The pytest plugin calls :func:`render_run` at session finish; ``pgdrill report`` calls
:func:`report_main` to re-render later runs.
"""

from pgdrill.reports.render import render_run, report_main

__all__ = ["render_run", "report_main"]
