"""pgdrill's pytest plugin (``pytest11`` entry point): options, markers, fixtures, report hooks.

Use in a drill::

    @pytest.mark.drill
    def test_my_drill(run_drill, scenario):
        assert_drill(run_drill(scenario))

A drill that could not verify fails the test; a drill whose backend is unavailable is
skipped (reported as not run), never passed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pgdrill.backends.base import Backend
from pgdrill.backends.factory import BACKENDS, make_backend
from pgdrill.config import Config, load_config
from pgdrill.drill.context import DrillContext, error_result
from pgdrill.drill.runner import run_scenario
from pgdrill.drill.spec import Scenario
from pgdrill.errors import BackendUnavailable, PgdrillError, UsageError
from pgdrill.results import DrillResult, Verdict, summary_line
from pgdrill.runs import Run, check_writable_dir, new_run_id

_RUN_KEY = pytest.StashKey[Run]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgdrill", "pgdrill disaster-recovery drills")
    group.addoption("--backend", choices=BACKENDS, default=None,
                    help="where drills run: local (default, no Docker), kind, or k8s (existing cluster)")
    group.addoption("--keep", action="store_true", default=False,
                    help="keep clusters, S3 data and directories of each drill for inspection; prints where")
    group.addoption("--pgdrill-config", default=None, help="pgdrill TOML config file (strict)")
    group.addoption("--reports-dir", default=None, help="where drill reports go (default: reports/)")
    group.addoption("--pgdrill-metrics-textfile", default=None, metavar="PATH",
                    help="also write the run's Prometheus metrics (docs/metrics.md) to this .prom file, "
                         "e.g. node-exporter's textfile directory")
    group.addoption("--pgdrill-pushgateway", default=None, metavar="URL",
                    help="also push the run's metrics to this Pushgateway (group: job pgdrill-drills, "
                         "backend; or a URL ending in /metrics/job/NAME[/LABEL/VALUE]...)")


def pytest_configure(config: pytest.Config) -> None:
    for marker in ("drill: a disaster-recovery drill (starts PostgreSQL and S3)",
                   "smoke: drill tier run by the nightly job",
                   "full: drill tier run at the quarterly game day"):
        config.addinivalue_line("markers", marker)


@pytest.fixture(scope="session")
def pgdrill_config(request: pytest.FixtureRequest) -> Config:
    try:
        config = load_config(request.config.getoption("--pgdrill-config"))
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    backend = request.config.getoption("--backend")
    reports = request.config.getoption("--reports-dir")
    config = replace(config, backend=backend or config.backend, reports_dir=reports or config.reports_dir)
    try:  # before any drill starts a server: its results would have nowhere to go
        check_writable_dir(Path(config.reports_dir), "fix --reports-dir or reports_dir in the config")
        from pgdrill.reports.metrics import check_destinations

        check_destinations(request.config.getoption("--pgdrill-metrics-textfile"),
                           request.config.getoption("--pgdrill-pushgateway"))
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    return config


@pytest.fixture(scope="session")
def pgdrill_run(request: pytest.FixtureRequest, pgdrill_config: Config) -> Run:
    run = Run(new_run_id(), Path(pgdrill_config.reports_dir), pgdrill_config.backend)
    request.config.stash[_RUN_KEY] = run
    return run


@pytest.fixture
def pgdrill_s3_mode() -> str | None:
    """The local backend's S3 server for this drill (an ``s3.mode``); None: the config's.

    Parametrise it to run a drill again on another S3 implementation (``drills/test_scenarios.py``
    runs the smoke tier on ``"moto"`` too): the drill is then named ``<name>-<mode>``."""
    return None


@pytest.fixture
def drill_config(pgdrill_config: Config, pgdrill_s3_mode: str | None) -> Config:
    """``pgdrill_config`` with this drill's S3 server (``pgdrill_s3_mode``)."""
    if pgdrill_s3_mode is None or pgdrill_s3_mode == pgdrill_config.s3.mode:
        return pgdrill_config
    if pgdrill_config.backend != "local" or pgdrill_config.s3.mode == "external":
        # The variant varies the S3 server pgdrill starts locally; on kind/k8s or an external
        # endpoint it does not exist (the same drill would run twice and prove nothing new).  A
        # pytest skip, not a NOT RUN drill: nothing this run was asked to verify went unverified.
        pytest.skip(f"the {pgdrill_s3_mode} S3 variant needs the local backend with an S3 server pgdrill starts "
                    f"(this run: backend {pgdrill_config.backend}, s3.mode {pgdrill_config.s3.mode})")
    return replace(pgdrill_config, s3=replace(pgdrill_config.s3, mode=pgdrill_s3_mode))  # type: ignore[arg-type]


@pytest.fixture
def run_drill(request: pytest.FixtureRequest, drill_config: Config, pgdrill_run: Run,
              drill_backend: Callable[[str], Backend], pgdrill_s3_mode: str | None,
              record_drill: Callable[[DrillResult], Path]) -> Callable[[Scenario], DrillResult]:
    """Run a scenario on the configured backend; the backend is torn down after the test,
    also on failure and on Ctrl-C (unless ``--keep``)."""
    keep = bool(request.config.getoption("--keep"))
    pgdrill_config = drill_config

    def run(scenario: Scenario) -> DrillResult:
        if pgdrill_s3_mode is not None and pgdrill_s3_mode != "embedded":
            # Its own name: its own run directory, S3 prefix, ledger and result file.
            scenario = replace(scenario, name=f"{scenario.name}-{pgdrill_s3_mode}")
        backend = drill_backend(scenario.name)
        fixtures_dir = Path(scenario.source_file).resolve().parent.parent / "fixtures"
        try:
            result = run_scenario(DrillContext(scenario, pgdrill_config, backend,
                                               pgdrill_run.state_dir(scenario.name), fixtures_dir, keep))
        except BaseException as exc:  # an interrupt: the drill's result (verdict error) is attached
            partial = getattr(exc, "pgdrill_result", None)
            if partial is not None:
                record_drill(partial)
            raise
        record_drill(result)
        if keep:
            print(f"\n[pgdrill] kept for inspection: {result.keep}")
        return result

    return run


@pytest.fixture
def drill_backend(request: pytest.FixtureRequest, drill_config: Config,
                  pgdrill_run: Run) -> Iterator[Callable[[str], Backend]]:
    """For Python drills that data cannot express: ``backend = drill_backend("my-drill")``.

    The backend is released after the test (also on failure and Ctrl-C) unless ``--keep``;
    an unavailable backend skips the drill as not run.  Record the drill's outcome with
    ``record_drill``.
    """
    keep = bool(request.config.getoption("--keep"))
    started: list[Backend] = []
    pgdrill_config = drill_config

    def make(name: str) -> Backend:
        try:
            backend = make_backend(pgdrill_config, f"{pgdrill_run.run_id}-{name}", keep=keep)
        except BackendUnavailable as exc:
            pgdrill_run.skipped(name, str(exc))
            pytest.skip(f"backend {pgdrill_config.backend} unavailable: {exc}")
        except PgdrillError as exc:
            pytest.fail(f"COULD NOT VERIFY {name}: backend did not start: {exc}", pytrace=False)
        started.append(backend)
        return backend

    try:
        yield make
    finally:
        for backend in started:
            backend.close()  # type: ignore[attr-defined]


@pytest.fixture
def record_drill(request: pytest.FixtureRequest, pgdrill_run: Run) -> Callable[[DrillResult], Path]:
    """Add a Python drill's ``DrillResult`` to the run's reports."""
    def record(result: DrillResult) -> Path | None:
        path = pgdrill_run.add(result)
        request.node.user_properties.append(("pgdrill_result", str(path)))
        request.node.stash[_RESULT] = (result, path)
        return path

    return record


def assert_drill(result: DrillResult) -> None:
    """Pass only a verified pass; could-not-verify fails loudly, distinct from a failed drill."""
    if result.verdict == Verdict.PASSED:
        return
    label = {Verdict.COULD_NOT_VERIFY: "COULD NOT VERIFY", Verdict.ERROR: "DRILL ERROR"}.get(result.verdict,
                                                                                        "DRILL FAILED")
    pytest.fail(f"{label}: {summary_line(result.to_dict())}\n  " + "\n  ".join(result.verdict_reasons),
                pytrace=False)


def _drill_name(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    return str(callspec.id) if callspec is not None else item.name.removeprefix("test_").replace("_", "-")


def _record_error(item: pytest.Item, exc: BaseException | None, text: str) -> None:
    """A drill that raised or was interrupted outside pgdrill's guard must not vanish."""
    run = item.config.stash.get(_RUN_KEY, None)
    if run is None or item.get_closest_marker("drill") is None:
        return
    if any(name == "pgdrill_result" for name, _ in item.user_properties):
        return
    partial = getattr(exc, "pgdrill_result", None)
    if partial is None:
        partial = error_result(_drill_name(item), run.backend, exc, text)
    if not run.has_result(partial.drill):
        item.user_properties.append(("pgdrill_result", str(run.add(partial))))


_RESULT = pytest.StashKey[tuple[DrillResult, "Path | None"]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.failed or call.excinfo is None:
        return
    recorded = item.stash.get(_RESULT, None)
    if recorded is not None and recorded[0].verdict == Verdict.PASSED:
        # The drill's own checks after pgdrill's verdict failed: results.json must agree with the test.
        result, path = recorded
        result.verdict = Verdict.FAILED
        result.verdict_reasons.append("a check of the drill test failed after pgdrill judged it: "
                                      + (str(call.excinfo.value).strip().splitlines() or ["(no message)"])[0][:300])
        if path is not None:
            result.write_json(path)
        return
    if not isinstance(call.excinfo.value, pytest.fail.Exception):
        _record_error(item, call.excinfo.value, str(report.longreprtext))


_CURRENT = pytest.StashKey[pytest.Item]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.config.stash[_CURRENT] = item


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Ctrl-C: the drill that was running is recorded as an error (the run is then not passed)."""
    config = _SESSION_CONFIG.get("config")
    item = config.stash.get(_CURRENT, None) if isinstance(config, pytest.Config) else None
    if item is not None:
        _record_error(item, excinfo.value, "interrupted")


_SESSION_CONFIG: dict[str, object] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _SESSION_CONFIG["config"] = session.config
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: the running drill's clusters are released
    # and it is recorded as an error.
    import signal

    def as_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        _SESSION_CONFIG["sigterm"] = signal.signal(signal.SIGTERM, as_interrupt)  # type: ignore[assignment]
        _SESSION_CONFIG["sighup"] = signal.signal(signal.SIGHUP, as_interrupt)  # type: ignore[assignment]
    except ValueError:  # not the main thread (pytest run from a thread): leave signals alone
        pass


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    hangup = _SESSION_CONFIG.pop("sighup", None)
    if hangup is not None:
        import signal

        signal.signal(signal.SIGHUP, hangup)  # type: ignore[arg-type]
    previous = _SESSION_CONFIG.pop("sigterm", None)
    if previous is not None:
        import signal

        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]
    run = session.config.stash.get(_RUN_KEY, None)
    if run is None or not (run.results or run.not_run):
        return
    path = run.write()
    _publish_metrics(session, path)
    if run.backend == "kind":
        from pgdrill.backends.kubernetes.factory import close_kind_environments

        close_kind_environments()  # the kind cluster is shared by a session's drills
    from pgdrill.reports import render_run

    try:
        render_run(path)
    except Exception as exc:  # a rendering bug must not hide the drill verdicts in results.json
        print(f"\npgdrill: could not render the HTML/JUnit report for {path}: {exc}", file=sys.stderr)


def _publish_metrics(session: pytest.Session, path: Path) -> None:
    """metrics.prom beside results.json, and the requested textfile and Pushgateway.  Metrics that
    could not be written or pushed make an otherwise green session fail: a drill result no alert
    can see is what the metrics exist to prevent."""
    from pgdrill.reports.metrics import publish

    published = publish(path, textfile=session.config.getoption("--pgdrill-metrics-textfile"),
                        pushgateway=session.config.getoption("--pgdrill-pushgateway"))
    _SESSION_CONFIG["metrics"] = published
    for error in published.errors:
        print(f"\npgdrill: {error}", file=sys.stderr)
    if published.errors and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    run = terminalreporter.config.stash.get(_RUN_KEY, None)
    if run is None or not (run.results or run.not_run):
        return
    terminalreporter.section("pgdrill drills")
    for result in run.results:
        terminalreporter.write_line(summary_line(result.to_dict()))
    for skipped in run.not_run:
        terminalreporter.write_line(f"{skipped['drill']}: NOT RUN | {skipped['reason']}")
    terminalreporter.write_line(f"overall: {run.overall().upper()}; reports: {run.folder}")
    published = _SESSION_CONFIG.pop("metrics", None)
    if published is not None:
        written = getattr(published, "written", [])
        terminalreporter.write_line("metrics: " + (", ".join(written) if written else "NOT written")
                                    + "".join(f"; {error}" for error in getattr(published, "errors", [])))
