"""A barman-cloud archive in S3: ``store`` is the S3 access (list, get, and the writes fault
injection needs), ``catalog`` the one reader of a serverName's archive (listing, backup.info,
timeline histories), ``continuity`` the recovery chains and WAL gaps computed from it."""
