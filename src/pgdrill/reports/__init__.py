"""Drill reports for audit (issue 7): report.html, junit.xml, results.json.sha256 and
``reports/history.jsonl``, all rendered from a run's ``results.json``.

The pytest plugin calls :func:`render_run` at session finish; ``pgdrill report`` calls
:func:`report_main` to re-render later runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from pgdrill.errors import UsageError
from pgdrill.reports.history import DEFAULT_RTO_GROWTH
from pgdrill.reports.render import render_run, schema_errors
from pgdrill.strict import ArgumentParser

__all__ = ["render_run", "report_main"]

EXIT_OK, EXIT_UNVERIFIED = 0, 2


def _growth(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction >= 0 (e.g. 0.2)")
    return value


def _check_input(path: Path) -> Path:
    """The results.json to render (``path`` or ``path``/results.json), or a one-line UsageError."""
    target = path / "results.json" if path.is_dir() else path
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{target} does not exist: give a run's results.json "
                         "(reports/<run id>/results.json) or its folder") from None
    except OSError as exc:
        raise UsageError(f"{target} cannot be read: {exc.strerror or exc}") from None
    try:
        loaded = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{target} is not valid JSON ({exc}): give a run's results.json") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"{target} is not a pgdrill run (expected a JSON object): give "
                         "reports/<run id>/results.json")
    return target


def report_main(argv: list[str]) -> int:
    """``pgdrill report <results.json>...``: re-render reports.

    Exit 0 rendered; 2 a report could not be written, or bad input (an argument, a missing or
    unreadable results.json: one line, checked before anything is written)."""
    parser = ArgumentParser(
        prog="pgdrill report",
        description="Re-render report.html, junit.xml, results.json.sha256 and the history line "
                    "of drill runs from their results.json. Exit 0 rendered, 2 could not verify (a report "
                    "could not be written) or bad input (one line on stderr), 130 interrupted.")
    parser.add_argument("results", nargs="+", type=Path, metavar="results.json",
                        help="a run's results.json (reports/<run id>/results.json), or its folder")
    parser.add_argument("--rto-growth-threshold", type=_growth, default=DEFAULT_RTO_GROWTH, metavar="FRACTION",
                        help="flag RTO growth above this fraction against the last good run (default 0.2)")
    parser.add_argument("--no-history", action="store_true",
                        help="do not read or append reports/history.jsonl")
    try:
        args = parser.parse_args(argv)
        targets = [_check_input(path) for path in args.results]
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except UsageError as exc:
        print(f"pgdrill report: error: {exc}", file=sys.stderr)
        return EXIT_UNVERIFIED
    status = EXIT_OK
    for target in targets:
        try:
            written = render_run(target, rto_growth_threshold=args.rto_growth_threshold,
                                 history=not args.no_history)
        except (OSError, ValueError) as exc:
            print(f"pgdrill report: error: {target}: {exc}", file=sys.stderr)
            status = EXIT_UNVERIFIED
            continue
        for problem in schema_errors(json.loads(target.read_bytes())):
            print(f"pgdrill report: {target}: warning: schema: {problem}", file=sys.stderr)
        print(f"{target}: " + ", ".join(f"{kind} {p}" for kind, p in written.items()))
    return status
