"""The ``pgdrill`` command.

``pgdrill run``       run scenarios (same engine as ``pytest drills/``) and write reports
``pgdrill scenarios`` validate and list scenario files
``pgdrill audit``     read-only health check of a real bucket (ADR alerts)
``pgdrill plan``      print the Kubernetes manifests a drill would apply
``pgdrill report``    re-render HTML/JUnit from results.json files
``pgdrill clean``     stop and remove what killed runs left behind (local backend)

Exit codes: 0 passed/healthy, 1 failed/alert, 2 could not verify or bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from pgdrill import __version__
from pgdrill.errors import PgdrillError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_UNVERIFIED = 0, 1, 2


def _run(args: argparse.Namespace) -> int:
    from pgdrill.backends.factory import make_backend
    from pgdrill.config import load_config
    from pgdrill.drill.context import DrillContext, error_result
    from pgdrill.drill.runner import run_scenario
    from pgdrill.drill.spec import load_scenario, load_scenarios
    from pgdrill.results import summary_line
    from pgdrill.runs import Run, new_run_id, sigterm_as_interrupt

    config = load_config(args.config)
    config = replace(config, backend=args.backend or config.backend,
                     reports_dir=args.reports_dir or config.reports_dir)
    scenarios = [load_scenario(Path(p)) for p in args.scenario] if args.scenario \
        else load_scenarios(Path(args.scenarios_dir))
    if args.tier:
        scenarios = [s for s in scenarios if s.tier == args.tier]
    if args.k:
        scenarios = [s for s in scenarios if args.k in s.name]
    if not scenarios:
        raise UsageError("no scenario selected: check the paths, --tier and -k")
    run = Run(new_run_id(), Path(config.reports_dir), config.backend)
    try:
        with sigterm_as_interrupt():
            for scenario in scenarios:
                backend = make_backend(config, f"{run.run_id}-{scenario.name}", keep=args.keep)
                try:
                    fixtures = Path(scenario.source_file).resolve().parent.parent / "fixtures"
                    result = run_scenario(DrillContext(scenario, config, backend, run.state_dir(scenario.name),
                                                       fixtures, args.keep))
                except BaseException as exc:  # interrupted: the drill is an error, never missing
                    partial = getattr(exc, "pgdrill_result", None) or error_result(
                        scenario.name, config.backend, exc, "")
                    run.add(partial)
                    print(summary_line(partial.to_dict()))
                    backend.close()  # type: ignore[attr-defined]
                    raise
                run.add(result)  # before the teardown: an interrupt there must not lose it
                backend.close()  # type: ignore[attr-defined]
                print(summary_line(result.to_dict()))
                for reason in result.verdict_reasons:
                    print(f"  {reason}")
                if args.keep:
                    print(f"  kept for inspection: {result.keep}")
    except KeyboardInterrupt:
        print("interrupted: every process and directory of the running drill was released", file=sys.stderr)
        path = run.write()
        _render(path)
        return 130
    path = run.write()
    _render(path)
    print(f"overall: {run.overall().upper()}; reports in {run.folder}")
    return {"passed": EXIT_OK, "failed": EXIT_FAILED}.get(run.overall(), EXIT_UNVERIFIED)


def _render(results_json: Path) -> None:
    from pgdrill.reports import render_run

    try:
        render_run(results_json)
    except Exception as exc:  # the verdicts are safe in results.json; say the HTML is missing
        print(f"pgdrill: could not render the report for {results_json}: {exc}", file=sys.stderr)


def _plan(argv: list[str]) -> int:
    """Like ``kubectl apply --dry-run``: every object a drill would create, as YAML."""
    import yaml

    from pgdrill.backends.kubernetes.plan import plan_manifests
    from pgdrill.config import load_config
    from pgdrill.drill.spec import load_scenario

    parser = argparse.ArgumentParser(prog="pgdrill plan", description=_plan.__doc__)
    parser.add_argument("scenario", help="scenario file")
    parser.add_argument("--config")
    parser.add_argument("--backend", choices=("kind", "k8s"), default="kind")
    args = parser.parse_args(argv)
    config = replace(load_config(args.config), backend=args.backend)
    print(yaml.safe_dump_all(plan_manifests(config, load_scenario(Path(args.scenario))), sort_keys=False), end="")
    return EXIT_OK


def _scenarios(args: argparse.Namespace) -> int:
    from pgdrill.drill.spec import load_scenarios

    for scenario in load_scenarios(Path(args.scenarios_dir)):
        faults = ", ".join(f.kind for f in scenario.faults) or "no fault"
        print(f"{scenario.name:28} {scenario.tier:6} {faults:28} expect {scenario.expect.outcome}"
              + (f" {', '.join(scenario.expect.findings)}" if scenario.expect.findings else ""))
    return EXIT_OK


def _clean(args: argparse.Namespace) -> int:
    from pgdrill.cleanup import clean_leftovers

    for line in clean_leftovers(Path(args.workdir) if args.workdir else None, dry_run=args.dry_run):
        print(line)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgdrill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"pgdrill {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run drill scenarios and write reports")
    run.add_argument("scenario", nargs="*", help="scenario files (default: every file in --scenarios-dir)")
    run.add_argument("--scenarios-dir", default="scenarios")
    run.add_argument("--backend", choices=("local", "kind", "k8s"))
    run.add_argument("--config", help="pgdrill TOML config (default: ./pgdrill.toml if present)")
    run.add_argument("--reports-dir")
    run.add_argument("--tier", choices=("smoke", "full"))
    run.add_argument("-k", help="only scenarios whose name contains this")
    run.add_argument("--keep", action="store_true", help="keep clusters and data for inspection")
    run.set_defaults(func=_run)

    scenarios = sub.add_parser("scenarios", help="validate and list scenarios")
    scenarios.add_argument("--scenarios-dir", default="scenarios")
    scenarios.set_defaults(func=_scenarios)

    clean = sub.add_parser("clean", help="stop and remove leftovers of killed local runs")
    clean.add_argument("--workdir", help="parent of run directories (default: system temp dir)")
    clean.add_argument("--dry-run", action="store_true")
    clean.set_defaults(func=_clean)

    # Subcommands with their own argument parsers take the rest of the command line.
    for name, text in (("audit", "read-only archive health check (ADR alerts)"),
                       ("plan", "print the Kubernetes manifests of a drill"),
                       ("report", "re-render reports from results.json")):
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _delegate(command: str, rest: list[str]) -> int:
    if command == "audit":
        from pgdrill.audit.cli import audit_main

        return audit_main(rest)
    if command == "plan":
        return _plan(rest)
    from pgdrill.reports import report_main

    return int(report_main(rest))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in ("audit", "plan", "report"):
        try:
            return _delegate(argv[0], argv[1:])
        except UsageError as exc:
            print(f"pgdrill {argv[0]}: error: {exc}", file=sys.stderr)
            return EXIT_UNVERIFIED
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except PgdrillError as exc:
        print(f"pgdrill {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_UNVERIFIED


if __name__ == "__main__":
    sys.exit(main())
