"""The end-to-end suite's fixtures: the app's client against the session's running services."""

from tests.e2e.conftest import client

__all__ = ["client"]
