"""The four caches: TTL, size bound and eviction, statistics, settings, several processes."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time

import numpy as np
import pandas as pd
import pytest

from freqtrade_opt_plugin.cache import caches
from freqtrade_opt_plugin.cache.caches import MISSING, get_cache, get_cache_status
from freqtrade_opt_plugin.cache.settings import CACHE_NAMES, DEFAULTS, load_cache_settings
from freqtrade_opt_plugin.commands.cache import register as register_cli


def frame_of(kib: int, seed: int = 0) -> pd.DataFrame:
    rows = kib * 1024 // 16
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.random(rows), "b": rng.random(rows)})


def test_defaults_match_the_seed(cache_dir):
    settings = caches.get_settings()
    assert DEFAULTS == {"ohlcv": (1024, 7200), "analysis": (200, 3600),
                        "temporary": (50, 300), "backtesting": (500, 1800)}
    for name, (size_mb, ttl) in DEFAULTS.items():
        cache = get_cache(name)
        assert cache.size_limit == size_mb * 2**20 == settings.size_limit(name)
        assert cache.ttl == ttl
        assert cache.directory == cache_dir / name


def test_set_get_and_private_directory(cache_dir):
    cache = get_cache("temporary")
    assert cache.get("k") is MISSING
    value = frame_of(64)
    assert cache.set("k", value)
    got = cache.get("k")
    pd.testing.assert_frame_equal(got, value, check_exact=True)
    assert got is not value
    assert (cache_dir / "temporary").stat().st_mode & 0o777 == 0o700
    assert (cache_dir).stat().st_mode & 0o777 == 0o700


def test_ttl_expiry(configure_caches):
    configure_caches(temporary_ttl_seconds=0.3)
    cache = get_cache("temporary")
    cache.set("default-ttl", 1)
    cache.set("long", 2, ttl=60)
    assert cache.get("default-ttl") == 1
    time.sleep(0.5)
    assert cache.get("default-ttl") is MISSING
    assert cache.get("long") == 2
    status = cache.status()
    assert status["expired"] >= 1
    assert status["entries"] == 1


def test_size_bound_evicts_oldest_but_keeps_recently_read(configure_caches):
    configure_caches(analysis_size_mb=1)
    cache = get_cache("analysis")
    for i in range(6):
        assert cache.set(f"k{i}", frame_of(100, i))
    assert cache.get("k0") is not MISSING  # read: becomes the most recently used
    for i in range(6, 14):
        assert cache.set(f"k{i}", frame_of(100, i))
    status = cache.status()
    assert status["size_mb"] <= 1.0
    assert status["evictions"] > 0
    assert cache.get("k0") is not MISSING  # survived thanks to the recency refresh
    assert cache.get("k1") is MISSING  # the oldest unread one went first
    assert cache.get("k13") is not MISSING
    # too large for the cache: refused, nothing evicted for it
    assert not cache.set("huge", frame_of(700))


def test_status_figures_aggregate_and_recommendations(configure_caches):
    configure_caches(analysis_size_mb=1)
    ohlcv = get_cache("ohlcv")
    ohlcv.set("a", 1)
    assert ohlcv.get("a") == 1
    assert ohlcv.get("a") == 1
    assert ohlcv.get("b") is MISSING
    analysis = get_cache("analysis")
    for i in range(12):
        analysis.set(f"k{i}", frame_of(200, i))
    status = get_cache_status()
    assert set(status) == {"caches", "redis", "aggregate", "recommendations"}
    assert status["redis"] is None  # no shared tier configured
    assert set(status["caches"]) == set(CACHE_NAMES)
    assert status["caches"]["ohlcv"]["redis"] is None
    o = status["caches"]["ohlcv"]
    assert (o["entries"], o["hits"], o["misses"], o["stores"]) == (1, 2, 1, 1)
    assert o["hit_rate"] == pytest.approx(2 / 3, abs=1e-3)
    a = status["caches"]["analysis"]
    assert a["evictions"] > 0 and a["stores"] == 12 and a["hit_rate"] is None
    agg = status["aggregate"]
    assert agg["total_memory_mb"] == pytest.approx(
        sum(s["size_mb"] for s in status["caches"].values()), abs=1e-3)
    assert agg["average_hit_rate"] == pytest.approx(2 / 3, abs=1e-3)
    settings = {r["setting"] for r in status["recommendations"]}
    assert "FREQTRADE_OPT_CACHE_ANALYSIS_SIZE_MB" in settings  # evictions are high
    assert "FREQTRADE_OPT_CACHE_ANALYSIS_TTL_SECONDS" in settings  # entries never read


def test_clear_one_cache_and_all(cache_dir):
    get_cache("ohlcv").set("a", 1)
    get_cache("temporary").set("b", 2)
    assert caches.clear_cache("ohlcv") == {"ohlcv": 1}
    assert get_cache("ohlcv").get("a") is MISSING
    assert get_cache("temporary").get("b") == 2
    assert get_cache("ohlcv").status()["hits"] == 0  # statistics reset
    assert caches.clear_cache()["temporary"] == 1
    with pytest.raises(ValueError, match="accepted: ohlcv, analysis"):
        get_cache("nope")


def test_cli_status_and_clear(cache_dir, capsys):
    get_cache("ohlcv").set("a", 1)
    get_cache("ohlcv").get("a")
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    args = parser.parse_args(["cache", "status", "--json"])
    assert args.func(args) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["caches"]["ohlcv"]["hits"] == 1
    args = parser.parse_args(["cache", "status"])
    assert args.func(args) == 0
    table = capsys.readouterr().out
    for word in ("ohlcv", "analysis", "temporary", "backtesting", "hit rate", "average hit rate"):
        assert word in table
    args = parser.parse_args(["cache", "clear", "ohlcv"])
    assert args.func(args) == 0
    assert "cleared cache 'ohlcv'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["cache", "clear", "bogus"])


# -- settings ----------------------------------------------------------------------------------
def test_bad_environment_values_are_reported_and_replaced(monkeypatch, caplog):
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_OHLCV_SIZE_MB", "lots")
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_TEMPORARY_TTL_SECONDS", "-5")
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_ANALYSIS_TTL_SECONDS", "nan")
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_BACKTESTING_SIZE_MB", "250")
    caplog.set_level("WARNING")
    settings = load_cache_settings()
    assert settings.ohlcv_size_mb == 1024
    assert settings.temporary_ttl_seconds == 300
    assert settings.analysis_ttl_seconds == 3600
    assert settings.backtesting_size_mb == 250
    assert settings.enabled
    messages = [r.getMessage() for r in caplog.records]
    assert any("FREQTRADE_OPT_CACHE_OHLCV_SIZE_MB='lots'" in m and "megabytes > 0" in m
               and "1024" in m for m in messages), messages
    assert any("FREQTRADE_OPT_CACHE_TEMPORARY_TTL_SECONDS='-5'" in m for m in messages)
    assert len(messages) == 3
    load_cache_settings()
    assert len(caplog.records) == 3  # once per process


def test_invalid_switch_means_off(monkeypatch, caplog):
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_ENABLED", "perhaps")
    caplog.set_level("WARNING")
    assert load_cache_settings().enabled is False
    assert "accepted: true or false; using False" in caplog.text


def test_disabled_caches_store_nothing(configure_caches):
    configure_caches(enabled="false")
    cache = get_cache("ohlcv")
    assert not cache.set("k", 1)
    assert cache.get("k") is MISSING
    assert not cache.directory.exists()


def test_config_section_is_overridden_by_environment(monkeypatch, caplog):
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_OHLCV_TTL_SECONDS", "60")
    caplog.set_level("WARNING")
    settings = load_cache_settings({"ohlcv_ttl_seconds": 10, "ohlcv_size_mb": 64,
                                    "unknown_key": 1})
    assert settings.ohlcv_ttl_seconds == 60
    assert settings.ohlcv_size_mb == 64
    assert "freqtrade_opt.cache.unknown_key' is not a setting" in caplog.text
    assert load_cache_settings("not a dict").ohlcv_size_mb == 1024


# -- several processes -------------------------------------------------------------------------
def _worker(worker: int, keys: int, queue) -> None:
    import logging

    from freqtrade_opt_plugin.cache.caches import MISSING, get_cache

    warnings: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger("freqtrade_opt_plugin").addHandler(Catch())
    cache = get_cache("temporary")
    wrong = 0
    for i in range(keys):
        value = np.full(2048, worker * 1000 + i, dtype=np.int64)  # 16 KiB: a file each
        cache.set(f"w{worker}-{i}", value)
        for other in range(4):
            got = cache.get(f"w{other}-{i}")
            if got is not MISSING and not (got == other * 1000 + i).all():
                wrong += 1
    cache.close()
    queue.put((worker, wrong, warnings))


def test_several_processes_write_and_read_at_once(configure_caches):
    configure_caches(temporary_size_mb=0.5)  # forces concurrent culls
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(w, 60, queue)) for w in range(4)]
    for p in workers:
        p.start()
    results = [queue.get(timeout=240) for _ in workers]
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    for worker, wrong, warnings in results:
        assert wrong == 0, worker
        assert warnings == [], warnings
    status = get_cache("temporary").status()
    assert status["stores"] == 240
    assert status["size_mb"] <= 0.5
    assert status["evictions"] > 0
    assert status["errors"] == 0


def _forked_child(queue) -> None:
    cache = get_cache("temporary")
    ok = cache.get("parent") == "p" and cache.set("child", "c") and cache.get("child") == "c"
    queue.put((ok, cache.bypassed))


def test_a_forked_child_opens_its_own_connection(cache_dir):
    cache = get_cache("temporary")
    cache.set("parent", "p")
    assert cache.get("parent") == "p"  # the parent has an open connection
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forked_child, args=(queue,))
    child.start()
    assert queue.get(timeout=60) == (True, None)
    child.join(timeout=60)
    assert cache.get("child") == "c"
    status = cache.status()
    assert status["stores"] == 2 and status["errors"] == 0
