"""The freqtrade-opt commands (shared fixtures: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _scrubbed(scrubbed_environment):
    """Only what a test passes applies to its runs (see `scrubbed_environment`)."""
    yield
