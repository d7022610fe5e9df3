"""Bad input in real, offline Freqtrade backtests: a clear message, stock results, exit code 0.

Each run batches bad inputs whose messages do not interfere, one store problem per run (they
concern the one state directory):

* ``env``: invalid level, percentages (text, negative, > 100), flag, error threshold and monitor
  setting in the environment, an unknown optimization name; a corrupt SQLite store.
* ``config``: a malformed ``freqtrade_opt`` section in a real config file (wrong types, unknown
  keys and optimization); the state directory path under a regular file (unwritable).
* ``typed``: a ``freqtrade_opt`` section that is not an object; a state directory with mode 0777.
* ``locked``: the store held under an exclusive SQLite lock by this test for the whole run, with
  a short ``FREQTRADE_OPT_MONITOR_BUSY_TIMEOUT``.

For each: return code 0, trades identical to stock Freqtrade, the message (naming the value and
what is accepted) in the log, and no traceback.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from freqtrade_opt_plugin.offline.workspace import run_backtest
from freqtrade_opt_plugin.telemetry_store import FILENAME, PathDelta, TelemetryStore


KNOWN = "known: tick_size, trade_parallelism, ohlcv_as_lists, max_drawdown"
LEVELS = "accepted: disabled, conservative, standard, aggressive, experimental"

BAD_ENV = {
    "FREQTRADE_OPT_LEVEL": "turbo",
    "FREQTRADE_OPT_TICK_SIZE_PERCENTAGE": "abc",
    "FREQTRADE_OPT_MAX_DRAWDOWN_PERCENTAGE": "-5",
    "FREQTRADE_OPT_TRADE_PARALLELISM_PERCENTAGE": "150",
    "FREQTRADE_OPT_OHLCV_AS_LISTS": "maybe",
    "FREQTRADE_OPT_WARP_DRIVE": "true",
    "FREQTRADE_OPT_ERROR_THRESHOLD": "0",
    "FREQTRADE_OPT_MONITOR_FLUSH_EVERY": "lots",
}

BAD_SECTION = {
    "level": "standard",
    "error_threshold": "many",
    "colour": "blue",
    "optimizations": {
        "tick_size": {"enabled": "yes please"},
        "max_drawdown": {"percentage": 101},
        "trade_parallelism": ["on"],
        "warp_drive": {"enabled": True},
    },
}

#: (case, substrings of the log that must appear): the messages the README table shows.
EXPECTED = {
    "env": [
        f"env FREQTRADE_OPT_LEVEL='turbo' is invalid (Value error, unknown level 'turbo'; {LEVELS}"
        "); using 'disabled'",
        "env FREQTRADE_OPT_TICK_SIZE_PERCENTAGE='abc' is invalid; accepted: an integer from 0 to "
        "100; 'tick_size' runs the original",
        "env FREQTRADE_OPT_MAX_DRAWDOWN_PERCENTAGE='-5' is invalid; accepted: an integer from 0 to "
        "100; 'max_drawdown' runs the original",
        "env FREQTRADE_OPT_TRADE_PARALLELISM_PERCENTAGE='150' is invalid; accepted: an integer "
        "from 0 to 100; 'trade_parallelism' runs the original",
        "env FREQTRADE_OPT_OHLCV_AS_LISTS='maybe' is invalid; accepted: true or false; "
        "'ohlcv_as_lists' runs the original",
        f"env FREQTRADE_OPT_WARP_DRIVE: unknown optimization 'warp_drive'; {KNOWN}",
        "env FREQTRADE_OPT_ERROR_THRESHOLD='0' is invalid (Input should be greater than or equal "
        "to 1); accepted: int (ge 1); using 3",
        "FREQTRADE_OPT_MONITOR_FLUSH_EVERY='lots' is invalid (Input should be a valid integer, "
        "unable to parse string as an integer); accepted: int (ge 1); using 10000",
        "unusable (DatabaseError: file is not a database while",
        "Run `freqtrade-opt reset` to start a new store.",
    ],
    "config": [
        "config 'freqtrade_opt.error_threshold'='many' is invalid (Input should be a valid "
        "integer, unable to parse string as an integer); accepted: int (ge 1); using 3",
        "config 'freqtrade_opt.colour' is not a setting; accepted: level, error_threshold, seed, "
        "allow_unverified, shadow_percentage, optimizations, monitor, cache",
        "config 'freqtrade_opt.optimizations.tick_size'={'enabled': 'yes please'} is invalid "
        "(enabled: Input should be a valid boolean, unable to interpret input); 'tick_size' runs "
        "the original",
        "config 'freqtrade_opt.optimizations.max_drawdown'={'percentage': 101} is invalid "
        "(percentage: Input should be less than or equal to 100); 'max_drawdown' runs the "
        "original",
        "config 'freqtrade_opt.optimizations.trade_parallelism'=['on'] is invalid",
        "'trade_parallelism' runs the original",
        f"config 'freqtrade_opt.optimizations.warp_drive': unknown optimization; {KNOWN}",
        "unusable (NotADirectoryError: [Errno 20] Not a directory:",
    ],
    "typed": [
        "config section 'freqtrade_opt' must be an object, got str 'standard'; it is ignored",
        "unusable (UnsafeDirectoryError:",
        "is writable by group or others (mode drwxrwxrwx); refusing to use it. Run: chmod go-w",
    ],
    "locked": [
        "busy (database is locked while writing telemetry); records are kept in memory and "
        "written at the next flush.",
    ],
}


def _hold_exclusive_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=0, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


@pytest.fixture(scope="module")
def bad_runs(rel_workspace, stock_run, tmp_path_factory, rel) -> dict:
    root = tmp_path_factory.mktemp("bad-input")
    workspace = rel_workspace

    def env_case():
        state = rel.private_dir(root, "corrupt")
        (state / FILENAME).write_bytes(b"this is not an SQLite database " * 64)
        return run_backtest(workspace, rel.plugin_env(state, **BAD_ENV), name="bad-env")

    def config_case():
        blocker = root / "a-regular-file"
        blocker.write_text("not a directory\n")
        section = root / "bad-section.json"
        section.write_text(json.dumps({"freqtrade_opt": BAD_SECTION}))
        return run_backtest(workspace, rel.plugin_env(blocker / "state"),
                            ["--config", str(section)], name="bad-config")

    def typed_case():
        state = root / "world-writable"
        state.mkdir()
        os.chmod(state, 0o777)
        section = root / "typed-section.json"
        section.write_text(json.dumps({"freqtrade_opt": "standard"}))
        env = rel.plugin_env(state, FREQTRADE_OPT_LEVEL="standard")
        run = run_backtest(workspace, env, ["--config", str(section)], name="bad-typed")
        assert rel.mode_of(state) == "drwxrwxrwx" and not (state / FILENAME).exists()
        return run

    def locked_case():
        state = rel.private_dir(root, "locked")
        store = TelemetryStore(state / FILENAME)
        assert store.write("earlier", [PathDelta("tick_size", "original", calls=1)])
        lock = _hold_exclusive_lock(state / FILENAME)
        try:
            env = rel.plugin_env(state, FREQTRADE_OPT_LEVEL="standard",
                                 FREQTRADE_OPT_MONITOR_BUSY_TIMEOUT="0.3")
            return run_backtest(workspace, env, name="bad-locked")
        finally:
            lock.execute("ROLLBACK")
            lock.close()

    return rel.run_parallel({"env": env_case, "config": config_case, "typed": typed_case,
                             "locked": locked_case})


@pytest.mark.parametrize("case", list(EXPECTED))
def test_bad_input_keeps_stock_results_with_a_clear_message(bad_runs, stock_run, case, rel):
    run = bad_runs[case]
    rel.assert_same_as_stock(run, stock_run)
    log = rel.log_of(run)
    missing = [message for message in EXPECTED[case] if message not in log]
    assert not missing, f"not in {run.log_path}: {missing}"
    assert "Traceback" not in log


def test_each_problem_is_reported_once(bad_runs, rel):
    log = rel.log_of(bad_runs["env"])
    assert log.count("unknown optimization 'warp_drive'") == 1
    assert log.count("telemetry store") == 1  # the corrupt store: one warning, then quiet


def test_existing_store_in_a_world_writable_directory_is_refused(tmp_path):
    """A store file that already exists in a directory others may write is refused too."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    assert TelemetryStore(state / FILENAME).write("r", [PathDelta("x", "original", calls=1)])
    os.chmod(state, 0o777)
    store = TelemetryStore(state / FILENAME)
    assert not store.write("r2", [PathDelta("x", "original", calls=1)])
    assert "writable by group or others" in (store.problem or "")
