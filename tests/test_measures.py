from datetime import datetime, timedelta, timezone

from pgdrill.ledger import LedgerEntry
from pgdrill.measures import compute_rpo, rpo_findings, rto_findings

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def entry(row_id, seconds, walfile="000000010000000000000003"):
    return LedgerEntry("t", row_id, (T0 + timedelta(seconds=seconds)).isoformat(), f"0/{row_id:X}000000",
                       walfile, "after_backup")


ENTRIES = [entry(25, 0), entry(26, 10), entry(27, 20)]


def test_no_loss_is_zero_rpo():
    rpo = compute_rpo(ENTRIES, {"t": {25, 26, 27}})
    assert rpo.seconds == 0 and rpo.lost_writes == 0
    assert rpo_findings(rpo, 300) == []


def test_adr_loss_rpo_is_from_last_recovered_to_last_committed():
    rpo = compute_rpo(ENTRIES, {"t": {25}})
    assert rpo.seconds == 20
    assert rpo.lost_writes == 2
    assert rpo.last_recovered.row_id == 25 and rpo.last_committed.row_id == 27
    assert rpo.lost_out_of_order == []


def test_rpo_exceeded_finding():
    rpo = compute_rpo(ENTRIES, {"t": {25}})
    findings = rpo_findings(rpo, 5)
    assert [f.code for f in findings] == ["RPO_EXCEEDED"]
    assert findings[0].evidence["lost_writes"] == 2


def test_writes_after_disaster_are_not_counted():
    rpo = compute_rpo(ENTRIES, {"t": {25, 26}}, disaster_at=T0 + timedelta(seconds=15))
    assert rpo.lost_writes == 0 and rpo.seconds == 0


def test_hole_in_the_middle_is_flagged_out_of_order():
    rpo = compute_rpo(ENTRIES, {"t": {25, 27}})
    assert rpo.lost_out_of_order == [26]


def test_nothing_recovered():
    rpo = compute_rpo(ENTRIES, {"t": set()})
    assert rpo.lost_writes == 3 and rpo.seconds == 20


def test_rto_findings():
    assert rto_findings(None, {}, 300) == []
    assert rto_findings(10.0, {"restore": 1.0}, 300) == []
    assert [f.code for f in rto_findings(400.0, {"restore": 1.0}, 300)] == ["RTO_EXCEEDED"]
