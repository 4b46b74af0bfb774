"""The ``pgdrill`` command.

``pgdrill run``       run scenarios (same engine as ``pytest drills/``) and write reports
``pgdrill scenarios`` validate and list scenario files
``pgdrill audit``     read-only health check of a real bucket (ADR alerts)
``pgdrill plan``      print the Kubernetes manifests a drill would apply
``pgdrill report``    re-render HTML/JUnit from results.json files
``pgdrill clean``     stop and remove what killed runs left behind (local backend)

Exit codes, the same for every command:
  0    passed / healthy
  1    a drill failed / an audit alert fires
  2    could not verify, or bad input or usage (one line on stderr naming what to fix; the
       traceback only with -v); nothing is started or written for bad input
  130  interrupted (Ctrl-C, SIGTERM)
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pgdrill import __version__
from pgdrill.errors import PgdrillError, UsageError
from pgdrill.strict import ArgumentParser

if TYPE_CHECKING:
    from pgdrill.backends.base import Backend
    from pgdrill.config import Config
    from pgdrill.drill.spec import Scenario
    from pgdrill.runs import Run

EXIT_OK, EXIT_FAILED, EXIT_UNVERIFIED, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = __doc__[__doc__.index("Exit codes"):]
_DELEGATED = ("audit", "plan", "report", "restore-test")


def _run(args: argparse.Namespace) -> int:
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
    _preflight(config, scenarios)
    from pgdrill.reports.metrics import check_destinations

    check_destinations(args.metrics_textfile, args.pushgateway)
    run = Run(new_run_id(), Path(config.reports_dir), config.backend)
    try:
        with sigterm_as_interrupt():
            for scenario in scenarios:
                backend = _start_backend(run, config, scenario, args.keep)
                if backend is None:
                    continue
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
        from pgdrill.cleanup import release_open_runs

        left, kept = release_open_runs()  # checked by what each run recorded, not by name
        for directory in kept:
            print(f"interrupted: kept for inspection (--keep): {directory}", file=sys.stderr)
        if left:
            print(f"interrupted: NOT released, still left of the running drill: {'; '.join(left)}",
                  file=sys.stderr)
        elif not kept:
            print("interrupted: every process and directory of the running drill was released", file=sys.stderr)
        path = run.write()
        _publish(path, args)
        _render(path)
        return 130
    path = run.write()
    published = _publish(path, args)
    _render(path)
    print(f"overall: {run.overall().upper()}; reports in {run.folder}")
    status = {"passed": EXIT_OK, "failed": EXIT_FAILED}.get(run.overall(), EXIT_UNVERIFIED)
    # Passed drills whose metrics no alert can see are not a green run (docs/metrics.md).
    return EXIT_UNVERIFIED if status == EXIT_OK and not published else status


def _publish(results_json: Path, args: argparse.Namespace) -> bool:
    """The run's metrics (metrics.prom beside results.json, --metrics-textfile, --pushgateway);
    False when one of them could not be written."""
    from pgdrill.reports.metrics import publish

    published = publish(results_json, textfile=args.metrics_textfile, pushgateway=args.pushgateway)
    for error in published.errors:
        print(f"pgdrill run: error: {error}", file=sys.stderr)
    return not published.errors


def _preflight(config: Config, scenarios: list[Scenario]) -> None:
    """Bad input found before anything starts (no server, no folder): one ``UsageError`` line."""
    from pgdrill.runs import check_writable_dir

    seen: dict[str, str] = {}
    for scenario in scenarios:
        if scenario.name in seen:
            raise UsageError(f"scenario {scenario.name} given twice ({seen[scenario.name]} and "
                             f"{scenario.source_file}): a run holds each drill once")
        seen[scenario.name] = scenario.source_file
    check_writable_dir(Path(config.reports_dir), "fix --reports-dir or reports_dir in the config")
    if config.backend == "local" and config.local.workdir:
        check_writable_dir(Path(config.local.workdir), "fix local.workdir in the config")


def _start_backend(run: Run, config: Config, scenario: Scenario, keep: bool) -> Backend | None:
    """The drill's backend; None when it did not start (recorded: not run, or could not verify).
    Before the first drill, bad input (a ``UsageError``) stops the run with nothing written."""
    from pgdrill.backends.factory import make_backend
    from pgdrill.drill.context import now_iso
    from pgdrill.errors import BackendUnavailable
    from pgdrill.results import DrillResult, Verdict, summary_line

    try:
        return make_backend(config, f"{run.run_id}-{scenario.name}", keep=keep)
    except PgdrillError as exc:
        if isinstance(exc, UsageError) and not (run.results or run.not_run):
            raise
        if isinstance(exc, BackendUnavailable):
            run.skipped(scenario.name, str(exc))
            print(f"{scenario.name}: NOT RUN | {exc}")
            return None
        result = DrillResult(drill=scenario.name, scenario=scenario.to_dict(), backend={"name": config.backend},
                             started_at=now_iso(), finished_at=now_iso(), verdict=Verdict.COULD_NOT_VERIFY,
                             verdict_reasons=[f"the {config.backend} backend did not start: {exc}"])
        run.add(result)
        print(summary_line(result.to_dict()))
        print(f"  {result.verdict_reasons[0]}")
        return None


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

    parser = ArgumentParser(prog="pgdrill plan", description=_plan.__doc__, epilog=EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
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

    status = EXIT_OK
    for line in clean_leftovers(Path(args.workdir) if args.workdir else None, dry_run=args.dry_run):
        print(line)
        if "; still left: " in line:  # a dead run's leftover that could not be removed
            status = EXIT_FAILED
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="pgdrill", description=__doc__.split("\n\n")[0], epilog=EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pgdrill {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run drill scenarios and write reports", epilog=EXIT_CODES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("scenario", nargs="*", help="scenario files (default: every file in --scenarios-dir)")
    run.add_argument("--scenarios-dir", default="scenarios")
    run.add_argument("--backend", choices=("local", "kind", "k8s"))
    run.add_argument("--config", help="pgdrill TOML config (default: ./pgdrill.toml if present)")
    run.add_argument("--reports-dir")
    run.add_argument("--tier", choices=("smoke", "full"))
    run.add_argument("-k", help="only scenarios whose name contains this")
    run.add_argument("--keep", action="store_true", help="keep clusters and data for inspection")
    run.add_argument("--metrics-textfile", metavar="PATH",
                     help="also write the run's Prometheus metrics to this .prom file (docs/metrics.md)")
    run.add_argument("--pushgateway", metavar="URL",
                     help="also push the run's metrics to this Pushgateway (job pgdrill-drills, backend; "
                          "or a URL ending in /metrics/job/NAME[/LABEL/VALUE]...)")
    run.set_defaults(func=_run)

    scenarios = sub.add_parser("scenarios", help="validate and list scenarios", epilog=EXIT_CODES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    scenarios.add_argument("--scenarios-dir", default="scenarios")
    scenarios.set_defaults(func=_scenarios)

    clean = sub.add_parser("clean", help="stop and remove leftovers of killed local runs")
    clean.add_argument("--workdir", help="parent of run directories (default: system temp dir)")
    clean.add_argument("--dry-run", action="store_true")
    clean.set_defaults(func=_clean)

    # Subcommands with their own argument parsers take the rest of the command line.
    for name, text in (("audit", "read-only archive health check (ADR alerts)"),
                       ("plan", "print the Kubernetes manifests of a drill"),
                       ("report", "re-render reports from results.json"),
                       ("restore-test", "restore a real archive read-only, prove it reaches its end, time it")):
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _delegate(command: str, rest: list[str]) -> int:
    if command == "audit":
        from pgdrill.audit.cli import audit_main

        return audit_main(rest)
    if command == "plan":
        return _plan(rest)
    if command == "restore-test":
        from pgdrill.restoretest.cli import restore_test_main

        return restore_test_main(rest)
    from pgdrill.reports import report_main

    return int(report_main(rest))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while argv and argv[0] in ("-v", "--verbose"):  # global options before a delegated command
        verbose = True
        argv.pop(0)
    command = argv[0] if argv and argv[0] in (*_DELEGATED, "run", "scenarios", "clean") else None
    try:
        if command in _DELEGATED:
            _logging(verbose)
            return _delegate(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        verbose = verbose or args.verbose
        _logging(verbose)
        return int(args.func(args))
    except PgdrillError as exc:
        return _error(command, exc, verbose)
    except KeyboardInterrupt:
        print(f"pgdrill{' ' + command if command else ''}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an OS error nobody foresaw: still one line, still exit 2
        return _error(command, exc, verbose, unexpected=True)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _error(command: str | None, exc: BaseException, verbose: bool, unexpected: bool = False) -> int:
    """One line on stderr (the traceback first with -v); exit 2."""
    if verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    elif unexpected:
        text = f"unexpected {type(exc).__name__}: {text}" + ("" if verbose else " (-v shows the traceback)")
    print(f"pgdrill{' ' + command if command else ''}: error: {text}", file=sys.stderr)
    return EXIT_UNVERIFIED


if __name__ == "__main__":
    sys.exit(main())
