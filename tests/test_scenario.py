from pathlib import Path

import pytest

from pgdrill.drill.spec import load_scenario, load_scenarios
from pgdrill.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

GOOD = """
name: {name}
description: test
tier: smoke
faults:
  - kind: delete_wal
    position: middle
expect:
  outcome: loss_detected
  findings: [WAL_GAP]
  lost_writes: 2
  rpo_seconds: [0.1, 30]
"""


def scenario_file(tmp_path, text, name="demo"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("{name}", name))
    return path


def test_shipped_scenarios_load():
    names = {s.name for s in load_scenarios(REPO / "scenarios")}
    assert {"wal-gap", "clean-recovery"} <= names


def test_good_scenario(tmp_path):
    scenario = load_scenario(scenario_file(tmp_path, GOOD))
    assert scenario.faults[0].kind == "delete_wal"
    assert scenario.faults[0].params.position == "middle"
    assert scenario.to_dict()["faults"] == [{"kind": "delete_wal", "position": "middle", "index": None}]


@pytest.mark.parametrize("change,message", [
    (("tier: smoke", "tier: nightly"), r"tier = 'nightly' is not allowed \(allowed: 'smoke', 'full'\)"),
    (("position: middle", "position: centre"), r"faults\[0\]\.position = 'centre' is not allowed"),
    (("position: middle", "posn: middle"), r"unknown key faults\[0\]\.posn"),
    (("kind: delete_wal", "kind: delete_everything"), r"faults\[0\]\.kind = 'delete_everything' is not allowed"),
    (("findings: [WAL_GAP]", "findings: [WAL_HOLE]"), r"unknown finding code 'WAL_HOLE'"),
    (("outcome: loss_detected", "outcome: fine"), r"expect\.outcome = 'fine' is not allowed"),
    (("description: test", "description: test\nfixtures: x"), r"unknown key fixtures"),
    (("  lost_writes: 2\n", ""), r"expect\.lost_writes and expect\.rpo_seconds are required"),
    (("  rpo_seconds: [0.1, 30]\n", ""), r"expect\.lost_writes and expect\.rpo_seconds are required"),
    (("lost_writes: 2", "lost_writes: [3, 1]"), r"lost_writes must be a number or \[min, max\]"),
    (("rpo_seconds: [0.1, 30]", "rpo_seconds: [5]"), r"rpo_seconds must be \[min, max\]"),
    (("findings: [WAL_GAP]", "findings: [WAL_GAP]\n  allowed: [NOPE]"), r"unknown finding code 'NOPE'"),
])
def test_bad_scenarios_name_file_key_and_allowed_values(tmp_path, change, message):
    path = scenario_file(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError, match=message) as info:
        load_scenario(path)
    assert str(path) in str(info.value)


def test_expectation_is_required(tmp_path):
    text = "name: {name}\ndescription: x\n"
    with pytest.raises(ConfigError, match="missing required key expect"):
        load_scenario(scenario_file(tmp_path, text))


def test_name_must_match_file(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(GOOD.replace("{name}", "demo"))
    with pytest.raises(ConfigError, match="must match the file name"):
        load_scenario(path)
