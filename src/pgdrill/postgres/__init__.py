"""PostgreSQL's own formats, pure: WAL segment names, LSNs and timeline history (``wal``), data pages (``pages``)."""
