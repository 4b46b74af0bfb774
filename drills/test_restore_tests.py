"""The quarterly game day's other half: every ``[[restore_test]]`` of the config restores a real
archive read-only and is judged like a drill (``pytest drills/ -k restore-test``).

With no ``[[restore_test]]`` configured there is nothing to restore: one test is skipped with
that reason, so a game day never reports a restore-test it did not run.
"""

from __future__ import annotations

import pytest

from pgdrill.config import load_config
from pgdrill.errors import UsageError
from pgdrill.plugin import assert_drill


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "restore_spec" not in metafunc.fixturenames:
        return
    try:
        specs = load_config(metafunc.config.getoption("--pgdrill-config")).restore_test
    except UsageError:
        specs = ()  # the plugin's pgdrill_config fixture reports the bad config
    metafunc.parametrize("restore_spec", list(specs) or [None],
                         ids=[s.display_name for s in specs] or ["restore-test"])


@pytest.mark.drill
@pytest.mark.full
def test_restore_test(restore_spec, pgdrill_config, pgdrill_run, record_drill):
    if restore_spec is None:
        pytest.skip("no [[restore_test]] in the config (docs/restore-test.md): no real archive to restore")
    if pgdrill_config.backend != "local":
        pytest.skip(f"restore-test runs on the local backend only so far (--backend {pgdrill_config.backend})")
    from pgdrill.restoretest.run import run_restore_test

    result = run_restore_test(restore_spec, pgdrill_config, f"{pgdrill_run.run_id}-{restore_spec.display_name}")
    record_drill(result)
    assert_drill(result)
