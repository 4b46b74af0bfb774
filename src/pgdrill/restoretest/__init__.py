"""``pgdrill restore-test``: restore a team's real archive read-only, prove the recovery reached
the end of it, check the data, and measure the RTO at its real size (docs/restore-test.md)."""
