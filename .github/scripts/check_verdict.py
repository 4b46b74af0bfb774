"""Fail CI unless the newest drill run passed and every selected drill actually ran.

pytest's exit code already fails on a failed or could-not-verify drill; this also catches a
run where drills were skipped (backend unavailable) or no results were written at all.
Usage: python .github/scripts/check_verdict.py REPORTS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(reports: str) -> int:
    runs = sorted(Path(reports).glob("*/results.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        print(f"no drill results under {reports}/: the drills did not run", file=sys.stderr)
        return 1
    result = json.loads(runs[-1].read_text())
    verdict = result.get("verdict")
    not_run = result.get("not_run") or []
    for drill in result.get("drills") or []:
        print(f"{drill.get('drill') or drill.get('scenario', '?')}: {drill.get('verdict')}")
    for drill in not_run:
        print(f"{drill.get('drill')}: NOT RUN ({drill.get('reason')})")
    if verdict != "passed" or not_run:
        print(f"drill run {runs[-1].parent.name}: verdict {verdict}, {len(not_run)} not run", file=sys.stderr)
        return 1
    print(f"drill run {runs[-1].parent.name}: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "reports"))
