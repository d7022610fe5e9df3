"""Whole offline backtests (level aggressive) sharing indicator and result entries through Redis.

Each "machine" is a ``freqtrade backtesting`` process with its own state directory (an empty local
tier) and the same Redis. Every run is compared trade by trade with stock Freqtrade.
"""

from __future__ import annotations

import threading
import time

import pytest

from freqtrade_opt_plugin.cache import caches


PAIRS = ("BTC/USDT", "ETH/USDT")
SHARED_WARNING = "the Redis tier at"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    root = tmp_path_factory.mktemp("redis-backtest")
    return create_workspace(root / "ws", PAIRS, days=10, seed=5)


@pytest.fixture(scope="module")
def stock(workspace):
    from freqtrade_opt_plugin.offline.workspace import run_backtest

    run = run_backtest(workspace, {"FREQTRADE_OPT_LEVEL": "disabled",
                                   "FREQTRADE_OPT_STATE_DIR": str(workspace.root / "stock")},
                       name="stock")
    assert len(run.trades) > 0
    return run


def machine_env(workspace, name: str, url: str, **extra: str) -> dict[str, str]:
    return {"FREQTRADE_OPT_LEVEL": "aggressive", "FREQTRADE_OPT_AUTOLOAD": "1",
            "FREQTRADE_OPT_STATE_DIR": str(workspace.root / name),
            "FREQTRADE_OPT_CACHE_REDIS_URL": url, **extra}


def status_of(state_dir, url: str, monkeypatch) -> dict:
    """The cache status of a 'machine' (its statistics, flushed by its process at exit)."""
    monkeypatch.delenv("FREQTRADE_OPT_CACHE_DIR", raising=False)
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_REDIS_URL", url)
    monkeypatch.setenv("FREQTRADE_OPT_STATE_DIR", str(state_dir))
    caches.configure()
    try:
        return caches.get_cache_status()["caches"]
    finally:
        caches.configure()


def test_entries_from_the_shared_tier_give_the_stock_backtest(workspace, stock, redis_server,
                                                              monkeypatch):
    from freqtrade_opt_plugin.offline.compare import compare_backtests
    from freqtrade_opt_plugin.offline.workspace import run_backtest

    redis_server.reset()
    url = redis_server.url
    first = run_backtest(workspace, machine_env(workspace, "machine-a", url), name="a")
    assert redis_server.client().dbsize() >= 3  # indicators of both pairs and the result
    # machine B: an empty local tier; indicators only (result reuse off), from Redis
    second = run_backtest(workspace, machine_env(workspace, "machine-b", url,
                                                 FREQTRADE_OPT_CACHE_BACKTESTS="false"),
                          name="b")
    for run in (first, second):
        verdict = compare_backtests(stock, run)
        assert verdict.identical, verdict.summary()
        assert SHARED_WARNING not in run.log_path.read_text()
    a = status_of(workspace.root / "machine-a", url, monkeypatch)
    assert a["analysis"]["redis"]["stores"] >= len(PAIRS), a["analysis"]
    assert a["backtesting"]["redis"]["stores"] == 1, a["backtesting"]
    b = status_of(workspace.root / "machine-b", url, monkeypatch)
    assert b["analysis"]["redis"]["hits"] >= len(PAIRS), b["analysis"]
    assert b["analysis"]["local_hits"] == 0 and b["analysis"]["redis"]["refused"] == 0


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A server of this file only: the test kills it."""
    from redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis-killed"))
    yield server
    server.stop()


def test_killing_redis_mid_run_leaves_the_run_correct(workspace, stock, own_server):
    from freqtrade_opt_plugin.offline.compare import compare_backtests
    from freqtrade_opt_plugin.offline.workspace import run_backtest

    killed = threading.Event()

    def kill_after_first_entry() -> None:
        client = own_server.client()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if client.dbsize() > 0:  # the run has started writing
                    break
            except Exception:  # noqa: BLE001
                return
            time.sleep(0.01)
        own_server.kill()
        killed.set()

    killer = threading.Thread(target=kill_after_first_entry, daemon=True)
    killer.start()
    run = run_backtest(workspace, machine_env(workspace, "machine-killed", own_server.url),
                       name="killed")
    killer.join(10)
    assert killed.is_set()
    verdict = compare_backtests(stock, run)
    assert verdict.identical, verdict.summary()
    log = run.log_path.read_text()
    assert log.count(SHARED_WARNING) == 1, log[-3000:]
