"""Session fixtures live in tests/fixtures/*; each real server starts once per session on a free port."""

pytest_plugins = [
    "tests.fixtures.stack",
    "tests.fixtures.htx_sandbox",
    "tests.fixtures.bybit_sandbox",
    "tests.fixtures.okx_sandbox",
    "tests.fixtures.pipeline",
]


def pytest_collection_modifyitems(items):
    """Tests marked `last` (the leak scans) run after everything else, whatever their file's name."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
