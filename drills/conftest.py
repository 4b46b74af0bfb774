"""Drills are run with `pytest drills/`; pgdrill's pytest plugin provides the fixtures."""
