"""Bad cache directories: one warning, the cache is bypassed, results are unchanged.

Each case is produced for real where the machine allows it: a tmpfs that fills up, a read-only
bind mount, a process of another user, a lock held by another process, garbage written over the
database or a value file. Mount-based cases are skipped when mounting is not permitted.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from freqtrade_opt_plugin.cache import caches
from freqtrade_opt_plugin.cache.caches import MISSING, get_cache
from freqtrade_opt_plugin.cache.decorators import ohlcv_cached


REPO = Path(__file__).resolve().parents[2]
CALLS: list[int] = []


@ohlcv_cached
def rolling_mean(frame: pd.DataFrame, window: int) -> pd.DataFrame:
    CALLS.append(window)
    return frame.rolling(window).mean()


def candles(rows: int = 20_000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"close": rng.random(rows), "volume": rng.random(rows)})


def assert_bypassed_with_one_warning(plugin_warnings, fragment: str) -> None:
    frame = candles()
    expected = frame.rolling(5).mean()
    for _ in range(3):  # results unchanged, computed every time, still one warning
        pd.testing.assert_frame_equal(rolling_mean(frame, 5), expected, check_exact=True)
    warnings = [w for w in plugin_warnings() if "cache 'ohlcv'" in w]
    assert len(warnings) == 1, plugin_warnings()
    assert "bypassed" in warnings[0] and fragment in warnings[0], warnings[0]
    assert get_cache("ohlcv").bypassed is not None


def test_group_writable_directory_is_refused(cache_dir, plugin_warnings):
    (cache_dir / "ohlcv").mkdir(parents=True)
    os.chmod(cache_dir, 0o700)
    os.chmod(cache_dir / "ohlcv", 0o777)
    assert_bypassed_with_one_warning(plugin_warnings, "writable by group or others")
    assert not (cache_dir / "ohlcv" / "cache.db").exists()  # nothing was opened there


def test_directory_that_cannot_be_created(configure_caches, tmp_path, plugin_warnings):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    configure_caches(dir=blocker / "caches")
    assert_bypassed_with_one_warning(plugin_warnings, "cannot open it")


def test_corrupt_database(cache_dir, plugin_warnings):
    cache = get_cache("ohlcv")
    cache.set("k", 1)
    caches.configure()  # close it
    (cache_dir / "ohlcv" / "cache.db").write_bytes(os.urandom(8192))
    for suffix in ("-wal", "-shm"):
        (cache_dir / "ohlcv" / f"cache.db{suffix}").unlink(missing_ok=True)
    assert_bypassed_with_one_warning(plugin_warnings, "DatabaseError")
    assert "freqtrade-opt cache clear ohlcv" in plugin_warnings()[0]
    # the documented remedy works
    assert caches.clear_cache("ohlcv") == {"ohlcv": 0}
    assert get_cache("ohlcv").bypassed is None
    assert get_cache("ohlcv").set("k", 2) and get_cache("ohlcv").get("k") == 2


def test_corrupt_value_file_is_removed_and_recomputed(cache_dir, plugin_warnings):
    frame = candles()
    CALLS.clear()
    expected = rolling_mean(frame, 7)  # stored as a value file (> 32 KiB)
    files = list((cache_dir / "ohlcv").rglob("*.val"))
    assert len(files) == 1
    files[0].write_bytes(b"FTOPTC1F" + os.urandom(4000))
    for _ in range(2):
        pd.testing.assert_frame_equal(rolling_mean(frame, 7), expected, check_exact=True)
    assert CALLS == [7, 7]  # recomputed once, then served from the fresh entry
    warnings = plugin_warnings()
    assert len(warnings) == 1 and "removed a corrupt entry" in warnings[0]
    assert str(files[0]) in warnings[0]  # names the file
    assert get_cache("ohlcv").bypassed is None


@pytest.mark.parametrize("rows", [40, 4000], ids=["inline-in-cache.db", "value-file"])
def test_one_flipped_bit_is_a_miss_the_entry_removed_and_one_warning_names_it(
        cache_dir, plugin_warnings, rows):
    from freqtrade_opt_plugin.cache.disk import _DIGEST, MAGIC, _unpack

    trades = pd.DataFrame({"pair": ["BTC/USDT", "ETH/USDT"] * (rows // 2),
                           "close_rate": np.linspace(100.0, 200.0, rows),
                           "profit_abs": np.linspace(-1.0, 1.0, rows)})
    assert get_cache("backtesting").set("k", trades)
    caches.configure()  # closed: only the bytes on disk remain
    files = list((cache_dir / "backtesting").rglob("*.val"))
    database = cache_dir / "backtesting" / "cache.db"
    if files:
        (where,) = files
        stored = bytearray(where.read_bytes())
    else:
        where = database
        with sqlite3.connect(database) as con:
            stored = bytearray(con.execute("SELECT value FROM Cache WHERE key = 'k'").fetchone()[0])
    row = rows // 2
    position = stored.find(np.float64(trades["close_rate"].iloc[row]).tobytes())
    assert position > 0
    stored[position] ^= 0x01  # one bit of one close_rate
    # without the checksum this decodes, with a changed close_rate (what used to be served)
    changed = _unpack(memoryview(bytes(stored))[len(MAGIC) + _DIGEST:])
    assert changed["close_rate"].iloc[row] != trades["close_rate"].iloc[row]
    if files:
        where.write_bytes(bytes(stored))
    else:
        with sqlite3.connect(database) as con:
            con.execute("UPDATE Cache SET value = ? WHERE key = 'k'", (bytes(stored),))
    cache = get_cache("backtesting")
    assert cache.get("k") is MISSING
    assert cache.get("k") is MISSING  # removed: a plain miss now, no second warning
    warnings = plugin_warnings()
    assert len(warnings) == 1, warnings
    assert "checksum mismatch" in warnings[0] and str(where) in warnings[0], warnings[0]
    assert list((cache_dir / "backtesting").rglob("*.val")) == []
    assert cache.status()["entries"] == 0 and cache.status()["errors"] == 1


def test_value_file_deleted_behind_the_cache_is_a_miss(cache_dir, plugin_warnings):
    frame = candles()
    rolling_mean(frame, 9)
    for path in (cache_dir / "ohlcv").rglob("*.val"):
        path.unlink()
    pd.testing.assert_frame_equal(rolling_mean(frame, 9), frame.rolling(9).mean())
    assert plugin_warnings() == []


_HOLD_LOCK = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
con.execute("UPDATE Settings SET value = value WHERE key = 'count'")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_database_locked_by_another_process(configure_caches, plugin_warnings):
    configure_caches(timeout_seconds=0.3)
    cache = get_cache("ohlcv")
    cache.set("warm", 1)  # creates the database
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK,
                               str(cache.directory / "cache.db"), "30"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        assert_bypassed_with_one_warning(plugin_warnings, "locked by another process")
        assert time.monotonic() - start < 10  # one timeout, not one per call
    finally:
        holder.kill()
        holder.wait()


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def mounted(tmp_path):
    mounts: list[Path] = []

    def mount(kind: str, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if kind == "tmpfs":
            ok = _mount("-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(path))
        else:  # a read-only bind mount of an existing directory onto itself
            ok = _mount("--bind", str(path), str(path))
            if ok:
                mounts.append(path)
                ok = _mount("-o", "remount,ro,bind", str(path))
        if not ok:
            pytest.skip("mounting is not permitted here")
        if path not in mounts:
            mounts.append(path)
        return path

    yield mount
    caches.configure()  # close every connection into the mounts first
    gc.collect()
    for path in reversed(mounts):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_full_disk(configure_caches, mounted, tmp_path, plugin_warnings):
    root = mounted("tmpfs", tmp_path / "small")
    configure_caches(dir=root)
    frame = candles(40_000)  # ~640 KiB: does not fit in 256 KiB
    pd.testing.assert_frame_equal(rolling_mean(frame, 3), frame.rolling(3).mean())
    warnings = [w for w in plugin_warnings() if "cache 'ohlcv'" in w]
    assert len(warnings) == 1 and "bypassed" in warnings[0], plugin_warnings()
    assert "No space left" in warnings[0] or "full" in warnings[0], warnings[0]
    assert_bypassed_with_one_warning(plugin_warnings, "bypassed")


def test_read_only_directory(configure_caches, mounted, tmp_path, plugin_warnings):
    root = tmp_path / "ro"
    configure_caches(dir=root)
    get_cache("ohlcv").set("k", 1)  # an existing, healthy cache...
    caches.configure()
    mounted("bind", root)  # ...that becomes read-only (root cannot write it either)
    caches.configure()
    assert_bypassed_with_one_warning(plugin_warnings, "bypassed")


_AS_NOBODY = """
import json, logging, os, sys
# import everything first: the interpreter's own files may not be readable by "nobody"
import freqtrade_opt_plugin.settings
from freqtrade_opt_plugin.cache import caches, decorators, disk, hashing
from freqtrade_opt_plugin.cache.disk import encode
encode(1)
os.setgid(65534); os.setuid(65534)
os.environ["FREQTRADE_OPT_STATE_DIR"] = sys.argv[1]
warnings = []
class Catch(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("freqtrade_opt_plugin").addHandler(Catch())
logging.getLogger("freqtrade_opt_plugin").setLevel(logging.WARNING)
from freqtrade_opt_plugin.cache.caches import get_cache, MISSING
cache = get_cache("ohlcv")
stored = cache.set("k", 1)
print(json.dumps({"stored": stored, "get": cache.get("k") is MISSING,
                  "bypassed": cache.bypassed, "warnings": warnings}))
"""


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to setuid")
def test_directory_of_another_user_and_no_permission(tmp_path):
    import tempfile

    state = Path(tempfile.mkdtemp(prefix="ftopt-perm-", dir="/tmp"))
    try:
        (state / "cache" / "ohlcv").mkdir(parents=True, mode=0o700)
        for path in (state, state / "cache", state / "cache" / "ohlcv"):
            os.chmod(path, 0o700)  # owned by root: another user for "nobody"
        os.chmod(state, 0o755)
        env = {**os.environ, "PYTHONPATH": str(REPO), "FREQTRADE_OPT_AUTOLOAD": "0"}
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_AS_NOBODY), str(state)],
                              capture_output=True, text=True, env=env, timeout=120, cwd="/tmp")
        assert proc.returncode == 0, proc.stderr
        import json

        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["stored"] is False and result["get"] is True
        assert result["bypassed"]
        assert len(result["warnings"]) == 1 and "bypassed" in result["warnings"][0]
    finally:
        subprocess.run(["rm", "-rf", str(state)])


def test_disabled_cache_never_touches_the_directory(configure_caches, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    configure_caches(enabled="false", dir=blocker / "sub")
    frame = candles(100)
    pd.testing.assert_frame_equal(rolling_mean(frame, 2), frame.rolling(2).mean())
    assert get_cache("ohlcv").bypassed is None
    assert get_cache("ohlcv").get("x") is MISSING


_WRITER = """
import os, sys
import numpy as np
import pandas as pd
from freqtrade_opt_plugin.cache import get_cache

cache = get_cache("temporary")
i = 0
while True:
    key = f"frame-{i % 40}"
    rng = np.random.default_rng(i % 40)
    cache.set(key, pd.DataFrame({"x": rng.random(20_000), "y": rng.integers(0, 9, 20_000)}))
    i += 1
    if i == 5:
        open(sys.argv[1], "w").close()  # tell the test the writer is busy
"""


def test_writer_killed_mid_write_leaves_a_usable_cache(cache_dir, tmp_path, plugin_warnings):
    """SIGKILL a process while it writes frames: the next process reads only exact values."""
    import signal
    import subprocess
    import sys
    import time

    import numpy as np
    import pandas as pd

    from freqtrade_opt_plugin.cache import caches, get_cache, get_cache_status

    ready = tmp_path / "ready"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(ready)], env=dict(os.environ))
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline and writer.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # let it get into the middle of further writes
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert ready.exists(), "the writer never got going"

    caches.configure()
    cache = get_cache("temporary")
    found = 0
    for n in range(40):
        value = cache.get(f"frame-{n}")
        if value is caches.MISSING:
            continue
        rng = np.random.default_rng(n)
        expected = pd.DataFrame({"x": rng.random(20_000), "y": rng.integers(0, 9, 20_000)})
        pd.testing.assert_frame_equal(value, expected, check_exact=True)
        found += 1
    assert found > 0
    assert cache.set("after-kill", {"ok": True}) and cache.get("after-kill") == {"ok": True}
    assert get_cache_status()["caches"]["temporary"]["entries"] >= found
