"""Session fixtures live in tests/fixtures/*; each real server starts once per session on a free port."""

pytest_plugins = [
    "tests.fixtures.stack",
    "tests.fixtures.sandbox",
]
