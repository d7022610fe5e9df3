"""The shared tier on a real redis-server: sharing, integrity, trust, bounds and failures.

"Two machines" are two cache roots (separate local tiers) using one Redis: in this process by
reconfiguring the caches between them, and in a subprocess with its own environment.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freqtrade_opt_plugin.cache import caches
from freqtrade_opt_plugin.cache.caches import MISSING, get_cache, get_cache_status
from freqtrade_opt_plugin.cache.redis_tier import KEY_PREFIX, check_url, redact


REPO = Path(__file__).resolve().parents[2]


def frame_of(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"close": rng.random(rows), "volume": rng.random(rows)})


def machine(root: Path, monkeypatch: pytest.MonkeyPatch, **env: object) -> None:
    """Switch this process to another 'machine': its own local cache directory."""
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_DIR", str(root))
    for key, value in env.items():
        monkeypatch.setenv(f"FREQTRADE_OPT_CACHE_{key.upper()}", str(value))
    caches.configure()


def rkey(name: str, key: str, namespace: str = "default") -> str:
    return f"{KEY_PREFIX}:{namespace}:{name}:{key}"


def test_two_machines_share_entries_through_redis(redis_url, redis_server, tmp_path,
                                                  monkeypatch, plugin_warnings):
    value = frame_of(5000)
    machine(tmp_path / "a", monkeypatch)
    assert get_cache("analysis").set("k", value)
    assert redis_server.client().exists(rkey("analysis", "k"))
    machine(tmp_path / "b", monkeypatch)  # empty local tier
    cache = get_cache("analysis")
    pd.testing.assert_frame_equal(cache.get("k"), value, check_exact=True)
    pd.testing.assert_frame_equal(cache.get("k"), value, check_exact=True)  # now local
    status = cache.status()
    assert (status["hits"], status["local_hits"], status["entries"]) == (2, 1, 1)
    assert status["redis"]["hits"] == 1 and status["redis"]["entries"] == 1
    assert status["redis"]["mean_latency_ms"] > 0
    assert get_cache("temporary").shared is None  # not shared by default
    assert plugin_warnings() == []


WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np, pandas as pd
    from freqtrade_opt_plugin.cache.caches import MISSING, get_cache
    cache = get_cache("backtesting")
    if sys.argv[1] == "write":
        rng = np.random.default_rng(3)
        cache.set("from-worker", pd.DataFrame({"close_rate": rng.random(1000)}))
        print(json.dumps({"stored": True}))
    else:
        got = cache.get("from-parent")
        print(json.dumps(None if got is MISSING else got))
""")


def test_a_subprocess_with_its_own_local_cache_shares_both_ways(redis_url, tmp_path, monkeypatch):
    env = {**os.environ, "FREQTRADE_OPT_CACHE_DIR": str(tmp_path / "worker"),
           "FREQTRADE_OPT_CACHE_REDIS_URL": redis_url,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def worker(action: str):
        proc = subprocess.run([sys.executable, "-c", WORKER, action], env=env, timeout=120,
                              capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    machine(tmp_path / "parent", monkeypatch)
    assert worker("write") == {"stored": True}
    got = get_cache("backtesting").get("from-worker")
    expected = pd.DataFrame({"close_rate": np.random.default_rng(3).random(1000)})
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert get_cache("backtesting").set("from-parent", {"trades": [1, 2.5, "x"]})
    assert worker("read") == {"trades": [1, 2.5, "x"]}


@pytest.mark.parametrize("tamper", ["flipped-bit", "pickle", "moved-key", "other-signing-key"])
def test_a_corrupt_or_foreign_entry_is_refused_and_removed(redis_url, redis_server, tmp_path,
                                                           monkeypatch, plugin_warnings, tamper):
    client = redis_server.client()
    value = frame_of(200)
    machine(tmp_path / "a", monkeypatch, redis_signing_key="team-secret")
    assert get_cache("ohlcv").set("k", value)
    stored = bytearray(client.get(rkey("ohlcv", "k")))
    if tamper == "flipped-bit":
        stored[-100] ^= 0x04
        client.set(rkey("ohlcv", "k"), bytes(stored))
    elif tamper == "pickle":
        client.set(rkey("ohlcv", "k"), pickle.dumps(value))
    elif tamper == "moved-key":  # a valid entry of another key copied over this one
        assert get_cache("ohlcv").set("other", frame_of(200, seed=1))
        client.set(rkey("ohlcv", "k"), client.get(rkey("ohlcv", "other")))
    machine(tmp_path / "b", monkeypatch,
            redis_signing_key="other-secret" if tamper == "other-signing-key" else "team-secret")
    assert get_cache("ohlcv").get("k") is MISSING
    assert not client.exists(rkey("ohlcv", "k"))  # removed
    warnings = plugin_warnings()
    assert len(warnings) == 1 and rkey("ohlcv", "k") in warnings[0], warnings
    assert "refused and removed" in warnings[0]
    assert get_cache("ohlcv").status()["redis"]["refused"] == 1


def test_a_read_only_user_reads_but_cannot_write(redis_url, redis_server, tmp_path, monkeypatch,
                                                 caplog, plugin_warnings):
    client = redis_server.client()
    client.acl_setuser("reader", enabled=True, passwords=["+reader-pw"], keys=["ftopt:*"],
                       commands=["+@read", "+@connection"])
    machine(tmp_path / "writer", monkeypatch)
    assert get_cache("analysis").set("shared", [1, 2, 3])
    url = redis_url.replace("redis://", "redis://reader@")
    machine(tmp_path / "reader", monkeypatch, redis_url=url, redis_password="reader-pw")
    cache = get_cache("analysis")
    assert cache.get("shared") == [1, 2, 3]
    assert cache.get("missing") is MISSING  # no lock for a read-only user: computes at once
    assert cache.set("new", {"a": 1}) and cache.get("new") == {"a": 1}  # stored locally
    assert not client.exists(rkey("analysis", "new"))
    assert cache.set("newer", {"b": 2})
    assert not client.exists(rkey("analysis", "newer"))
    assert any("may not write" in r.getMessage() for r in caplog.records)
    assert plugin_warnings() == []  # an intended set-up: logged at info level, once
    assert "reader-pw" not in caplog.text
    status = get_cache_status()
    assert status["redis"]["url"] == url and status["redis"]["read_only"] is True
    assert status["caches"]["analysis"]["redis"]["skipped"] == 2


def test_entry_size_limit_keeps_large_values_local(redis_url, redis_server, tmp_path,
                                                   monkeypatch):
    machine(tmp_path / "a", monkeypatch, redis_max_entry_mb=0.05)
    assert get_cache("ohlcv").set("small", frame_of(100))
    assert get_cache("ohlcv").set("large", frame_of(20_000))  # ~320 KB
    client = redis_server.client()
    assert client.exists(rkey("ohlcv", "small")) and not client.exists(rkey("ohlcv", "large"))
    assert get_cache("ohlcv").get("large") is not MISSING  # in the local tier
    assert get_cache("ohlcv").status()["redis"]["skipped"] == 1


def test_maxmemory_with_allkeys_lru_bounds_the_tier(redis_url, redis_server, tmp_path,
                                                    monkeypatch, plugin_warnings):
    client = redis_server.client()
    base = client.info("memory")["used_memory"]
    limit = base + 2 * 2**20
    client.config_set("maxmemory", limit)
    client.config_set("maxmemory-policy", "allkeys-lru")
    machine(tmp_path / "a", monkeypatch)
    cache = get_cache("ohlcv")
    for i in range(150):  # ~7.5 MB into a 2 MB budget
        assert cache.set(f"k{i}", frame_of(3000, seed=i))
        assert client.info("memory")["used_memory"] <= limit + 2**20
    assert 0 < client.dbsize() < 150  # older entries evicted by Redis
    assert cache.status()["redis"]["stores"] == 150
    machine(tmp_path / "b", monkeypatch)
    cache = get_cache("ohlcv")
    found = [cache.get(f"k{i}") is not MISSING for i in range(150)]
    assert found[-1] and not found[0]  # the recent entries are there, the oldest evicted
    pd.testing.assert_frame_equal(cache.get("k149"), frame_of(3000, seed=149), check_exact=True)
    assert plugin_warnings() == []
    status = get_cache_status()
    assert status["redis"]["maxmemory_policy"] == "allkeys-lru"
    assert not [r for r in status["recommendations"] if r["cache"] == "redis"]


def test_a_full_server_without_eviction_skips_stores_with_one_warning(
        redis_url, redis_server, tmp_path, monkeypatch, plugin_warnings):
    client = redis_server.client()
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 2**20)
    machine(tmp_path / "a", monkeypatch)
    cache = get_cache("ohlcv")
    for i in range(40):
        assert cache.set(f"k{i}", frame_of(3000, seed=i))  # always stored locally
    for i in range(40):
        pd.testing.assert_frame_equal(cache.get(f"k{i}"), frame_of(3000, seed=i))
    warnings = plugin_warnings()
    assert len(warnings) == 1 and "is full" in warnings[0], warnings
    assert "allkeys-lru" in warnings[0]
    status = get_cache_status()
    assert any("maxmemory-policy allkeys-lru" in r["message"] for r in status["recommendations"])


def test_redis_down_costs_one_bounded_wait_and_one_warning(cache_dir, tmp_path, monkeypatch,
                                                           plugin_warnings):
    from redis_server import _free_port

    machine(tmp_path / "a", monkeypatch, redis_url=f"redis://127.0.0.1:{_free_port()}",
            redis_timeout_seconds=0.2, redis_connect_timeout_seconds=0.2)
    cache = get_cache("analysis")
    start = time.monotonic()
    for i in range(20):
        assert cache.get(f"k{i}") is MISSING
        assert cache.set(f"k{i}", i) and cache.get(f"k{i}") == i
    assert time.monotonic() - start < 5
    warnings = plugin_warnings()
    assert len(warnings) == 1 and "unavailable" in warnings[0], warnings
    status = get_cache_status()
    assert status["redis"]["state"] == "unavailable"


def test_a_paused_server_is_a_bounded_wait(redis_url, redis_server, tmp_path, monkeypatch,
                                           plugin_warnings):
    machine(tmp_path / "a", monkeypatch, redis_timeout_seconds=0.3)
    cache = get_cache("ohlcv")
    assert cache.set("k", 1)
    machine(tmp_path / "b", monkeypatch, redis_timeout_seconds=0.3)
    cache = get_cache("ohlcv")
    redis_server.client().execute_command("CLIENT", "PAUSE", 1500, "ALL")
    start = time.monotonic()
    assert cache.get("k") is MISSING  # Redis does not answer in time: computed locally
    assert cache.set("k", 1) and cache.get("k") == 1
    assert time.monotonic() - start < 1.5
    warnings = plugin_warnings()
    assert len(warnings) == 1 and "TimeoutError" in warnings[0], warnings
    redis_server.client().execute_command("CLIENT", "UNPAUSE")


def test_one_machine_computes_a_missing_entry_the_other_waits_for_it(
        redis_url, redis_server, tmp_path, monkeypatch):
    machine(tmp_path / "a", monkeypatch)
    first = get_cache("backtesting")
    assert first.get("slow") is MISSING  # takes the lock: this 'machine' computes
    assert redis_server.client().exists(f"{KEY_PREFIX}:default:lock:backtesting:slow")
    second = caches.SpecializedCache("backtesting", tmp_path / "b" / "backtesting", 2**30, 60,
                                     5, shared=first.shared)
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(second.get("slow")))
    start = time.monotonic()
    waiter.start()
    time.sleep(0.3)
    assert first.set("slow", {"result": 42})  # stores and releases the lock
    waiter.join(10)
    assert got == [{"result": 42}]  # served from the shared tier, not computed again
    assert time.monotonic() - start < 3
    second.close()


def test_the_wait_for_another_machine_is_bounded(redis_url, redis_server, tmp_path,
                                                 monkeypatch):
    machine(tmp_path / "a", monkeypatch, redis_lock_wait_seconds=0.5)
    first = get_cache("analysis")
    assert first.get("never-stored") is MISSING  # holds the lock and never stores
    second = caches.SpecializedCache("analysis", tmp_path / "b" / "analysis", 2**30, 60, 5,
                                     shared=first.shared)
    first.shared._held.clear()  # the 'other machine' does not release: second sees its lock
    start = time.monotonic()
    assert second.get("never-stored") is MISSING
    assert 0.4 < time.monotonic() - start < 2
    second.close()


def test_a_lock_whose_value_is_never_stored_ends_at_the_next_lookup(redis_url, redis_server,
                                                                    tmp_path, monkeypatch):
    machine(tmp_path / "a", monkeypatch)
    cache = get_cache("analysis")
    client = redis_server.client()
    assert cache.get("not-storable") is MISSING
    assert client.exists(f"{KEY_PREFIX}:default:lock:analysis:not-storable")
    assert cache.get("next-pair") is MISSING  # the first computation is over
    assert not client.exists(f"{KEY_PREFIX}:default:lock:analysis:not-storable")
    cache.skip("too large")  # a refusal releases the cache's locks too
    assert not client.exists(f"{KEY_PREFIX}:default:lock:analysis:next-pair")


def test_a_plain_text_url_to_another_host_is_refused(cache_dir, tmp_path, monkeypatch,
                                                     plugin_warnings):
    machine(tmp_path / "a", monkeypatch, redis_url="redis://:s3cret@10.1.2.3:6379/0")
    cache = get_cache("analysis")
    start = time.monotonic()
    assert cache.set("k", 1) and cache.get("k") == 1  # local only, nothing connected
    assert time.monotonic() - start < 1
    warnings = plugin_warnings()
    assert len(warnings) == 1 and "rediss://" in warnings[0] and "REDIS_ALLOW_PLAINTEXT" in \
        warnings[0]
    assert "s3cret" not in warnings[0] and "***" in warnings[0]
    assert get_cache_status()["redis"]["state"] == "refused"


def test_tls_and_a_password(cache_dir, tmp_path, monkeypatch, plugin_warnings, caplog):
    """rediss:// with a CA file in the URL, and the password from its own setting."""
    from redis_server import RedisServer, _free_port

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    certs = tmp_path / "tls"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    port = _free_port()
    server = RedisServer(tmp_path / "server", "--port", "0", "--tls-port", str(port),
                         "--tls-cert-file", str(certs / "cert.pem"),
                         "--tls-key-file", str(certs / "key.pem"),
                         "--tls-ca-cert-file", str(certs / "cert.pem"),
                         "--tls-auth-clients", "no", "--requirepass", "team-pw",
                         tls_port=port)
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs / 'cert.pem'}"
        machine(tmp_path / "a", monkeypatch, redis_url=url, redis_password="team-pw")
        assert get_cache("backtesting").set("k", {"profit": 1.25})
        machine(tmp_path / "b", monkeypatch, redis_url=url, redis_password="team-pw")
        assert get_cache("backtesting").get("k") == {"profit": 1.25}
        assert get_cache("backtesting").status()["redis"]["hits"] == 1
        machine(tmp_path / "c", monkeypatch, redis_url=url, redis_password="wrong")
        assert get_cache("backtesting").get("k") is MISSING  # refused by the server: local
        warnings = plugin_warnings()
        assert len(warnings) == 1 and "unavailable" in warnings[0], warnings
        assert "team-pw" not in caplog.text and "wrong" not in caplog.text
    finally:
        server.stop()


def test_config_section_and_namespaces_keep_teams_apart(redis_server, cache_dir, tmp_path,
                                                        monkeypatch, plugin_warnings):
    redis_server.reset()
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_DIR", str(tmp_path / "a"))
    caches.configure({"redis_url": redis_server.url, "redis_namespace": "team-a"})
    assert get_cache("analysis").set("k", 1)
    assert redis_server.client().exists(rkey("analysis", "k", namespace="team-a"))
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_DIR", str(tmp_path / "b"))
    caches.configure({"redis_url": redis_server.url, "redis_namespace": "team-b"})
    assert get_cache("analysis").get("k") is MISSING
    caches.configure({"redis_url": redis_server.url, "redis_namespace": "team a!"})
    assert caches.get_settings().redis_namespace == "default"
    warnings = plugin_warnings()
    assert len(warnings) == 1 and "redis_namespace'='team a!' is invalid" in warnings[0], warnings


def test_url_checks_and_redaction():
    assert check_url("redis://127.0.0.1:6379", False) is None
    assert check_url("redis://localhost", False) is None
    assert check_url("redis://[::1]:6379", False) is None
    assert check_url("unix:///run/redis.sock", False) is None
    assert check_url("rediss://cache.example.org:6380", False) is None
    assert check_url("redis://cache.example.org", True) is None
    assert "not a loopback" in check_url("redis://cache.example.org", False)
    assert "not a loopback" in check_url("redis://192.168.1.5", False)
    assert "scheme" in check_url("http://127.0.0.1", False)
    assert "invalid URL" in check_url("redis://127.0.0.1:notaport", False)
    assert redact("rediss://bob:pw@h:1/0?password=x") == "rediss://bob:***@h:1/0?password=***"


def test_cache_status_command_shows_both_tiers(redis_url, tmp_path, monkeypatch, capsys):
    import argparse

    from freqtrade_opt_plugin.commands.cache import register

    machine(tmp_path / "a", monkeypatch)
    get_cache("analysis").set("k", frame_of(100))
    machine(tmp_path / "b", monkeypatch)
    assert get_cache("analysis").get("k") is not MISSING
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["cache", "status", "--json"])
    assert args.func(args) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["redis"]["state"] == "ok" and status["redis"]["ping_ms"] is not None
    assert status["caches"]["analysis"]["redis"]["hits"] == 1
    args = parser.parse_args(["cache", "status"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "shared tier" in out and "redis" in out.lower()
