"""Fixtures for the cache tests: a private state directory and fresh cache settings per test."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Caches under ``tmp_path/state/cache`` with default settings (no FREQTRADE_OPT_CACHE_*)."""
    from freqtrade_opt_plugin.cache import caches

    for key in list(os.environ):
        if key.startswith("FREQTRADE_OPT_CACHE_") or key == "_FREQTRADE_OPT_CONFIG":
            monkeypatch.delenv(key)
    state = tmp_path / "state"
    monkeypatch.setenv("FREQTRADE_OPT_STATE_DIR", str(state))
    caches.configure()
    yield state / "cache"
    caches.configure()  # close this test's caches


@pytest.fixture
def configure_caches(cache_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Set FREQTRADE_OPT_CACHE_* variables and reload the settings: ``configure_caches(X=1)``."""
    from freqtrade_opt_plugin.cache import caches

    def apply(**env: object):
        for key, value in env.items():
            monkeypatch.setenv(f"FREQTRADE_OPT_CACHE_{key.upper()}", str(value))
        return caches.configure()

    return apply


@pytest.fixture
def plugin_warnings(caplog: pytest.LogCaptureFixture):
    """The warnings logged by the plugin during the test (their messages)."""
    caplog.set_level(logging.DEBUG, logger="freqtrade_opt_plugin")

    def collect() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and r.name.startswith("freqtrade_opt_plugin")]

    return collect


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on 127.0.0.1 and a free port for the whole test run (redis_server.py)."""
    from redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server, cache_dir, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty Redis server, used by this test's caches as their shared tier."""
    from freqtrade_opt_plugin.cache import caches

    redis_server.reset()
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_REDIS_URL", redis_server.url)
    caches.configure()
    return redis_server.url
