"""Faulty optimizations in real, offline Freqtrade backtests: stock results, counted, switched off.

A third-party distribution (entry point ``faulty``, on PYTHONPATH) registers one optimization on
the built-in ``tick_size`` target, chosen by ``FTOPT_FAULT``:

* ``before``: raises before touching the candles;
* ``partial``: adds a wrong ``open_count`` column and changes half the close prices, then raises;
* ``end``: runs the whole original (every column added), then raises;
* ``wrong_type``: returns a list instead of the Series. The Router cannot see a wrong result on
  its own (it only catches exceptions): this case runs in shadow mode (level experimental,
  ``FREQTRADE_OPT_SHADOW_PERCENTAGE=100``), where the optimized path runs on copies and is
  compared with the original.

The built-in is switched off (``FREQTRADE_OPT_TICK_SIZE=false``) and the faulty one on. Both
target one function; activation installs one Router per target holding both candidates (same
priority, so ordered by name: the faulty one is outermost). Per call the faulty one runs; its
fallback is the layer below, the built-in, whose flag is off, so the original runs (see
test_second_optimization_...).

With 3 pairs there are 3 calls; ``FREQTRADE_OPT_ERROR_THRESHOLD=2`` switches the faulty one off
after the second, persistently: the third call and ``freqtrade-opt status`` show it.

Also: writers of the telemetry store killed with SIGKILL mid-write leave a store that the next run,
``report --json`` and the counters all handle.
"""

from __future__ import annotations

import inspect
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from freqtrade_opt_plugin.offline.workspace import run_backtest, subprocess_env
from freqtrade_opt_plugin.registry import fingerprint
from freqtrade_opt_plugin.telemetry_store import FILENAME, TelemetryStore


PAIRS = 3
THRESHOLD = 2
EXCEPTION_FAULTS = ("before", "partial", "end")
FAULTS = (*EXCEPTION_FAULTS, "wrong_type")
STATUS_CHECKED = ("before", "wrong_type")  # `freqtrade-opt status` costs a process start each

FAULTY_PLUGIN = '''
"""A deliberately broken optimization of get_tick_size_over_time (FTOPT_FAULT picks the fault)."""
import inspect
import os

from freqtrade_opt_plugin.hookspecs import hookimpl
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel

TARGET = "freqtrade.data.btanalysis.historic_precision:get_tick_size_over_time"


def _original():
    import freqtrade.data.btanalysis.historic_precision as hp

    return inspect.unwrap(hp.get_tick_size_over_time)


def before(candles):
    raise RuntimeError("injected fault before touching the candles")


def partial(candles):
    candles["open_count"] = 99  # a wrong column, as if half-way through
    half = candles.index[: len(candles) // 2]
    candles.loc[half, "close"] = candles.loc[half, "close"] * 1.5  # and wrong prices
    raise RuntimeError("injected fault after mutating the candles")


def end(candles):
    _original()(candles)  # all the work done, every column added
    raise RuntimeError("injected fault at the end")


def wrong_type(candles):
    return list(_original()(candles))


FAULTS = {"before": before, "partial": partial, "end": end, "wrong_type": wrong_type}


@hookimpl
def freqtrade_opt_register_optimizations():
    mode = os.environ.get("FTOPT_FAULT", "")
    if mode not in FAULTS:
        return []
    return [Optimization(
        name=f"faulty_{mode}", target=TARGET, replacement=FAULTS[mode],
        tier=OptimizationLevel.EXPERIMENTAL, fingerprints={"2026.9": "%(fingerprint)s"},
        description="fault injection",
    )]
'''


@pytest.fixture(scope="module")
def faulty_site(tmp_path_factory, rel) -> Path:
    import freqtrade.data.btanalysis.historic_precision as hp

    site = tmp_path_factory.mktemp("faulty-site")
    original = inspect.unwrap(hp.get_tick_size_over_time)
    source = FAULTY_PLUGIN % {"fingerprint": fingerprint(original)}
    (site / "faulty_opt.py").write_text(source)
    rel.dist_info(site, "faulty-opt", "faulty = faulty_opt")
    return site


def fault_env(rel, site: Path, state: Path, mode: str) -> dict[str, str]:
    env = rel.plugin_env(
        state,
        PYTHONPATH=f"{site}:{rel.plugin_root}",
        FTOPT_FAULT=mode,
        FREQTRADE_OPT_TICK_SIZE="false",
        **{f"FREQTRADE_OPT_FAULTY_{mode.upper()}": "true"},
        FREQTRADE_OPT_ERROR_THRESHOLD=str(THRESHOLD),
        FREQTRADE_OPT_LEVEL="standard",
    )
    if mode == "wrong_type":
        env.update(FREQTRADE_OPT_LEVEL="experimental", FREQTRADE_OPT_SHADOW_PERCENTAGE="100")
    return env


@pytest.fixture(scope="module")
def fault_runs(rel_workspace, stock_run, faulty_site, tmp_path_factory, rel) -> dict:
    """Per fault: the backtest, its state dir, env, and `freqtrade-opt status --json` afterwards."""
    root = tmp_path_factory.mktemp("faults")

    def job(mode: str):
        def run():
            state = rel.private_dir(root, mode)
            env = fault_env(rel, faulty_site, state, mode)
            backtest = run_backtest(rel_workspace, env, name=f"fault-{mode}")
            result = {"run": backtest, "state": state, "env": env, "status": None}
            if mode in STATUS_CHECKED:
                status = rel.opt_cli(["status", "--json"], env, cwd=rel_workspace.root)
                assert status.returncode == 0, status.stderr
                result["status"] = json.loads(status.stdout)
            return result
        return run

    return rel.run_parallel({mode: job(mode) for mode in FAULTS})


def totals(state: Path) -> dict[tuple[str, str], object]:
    return {(t.name, t.path): t for t in TelemetryStore(state / FILENAME).totals()}


def status_row(status: dict, name: str) -> dict:
    return next(row for row in status["optimizations"] if row["name"] == name)


@pytest.mark.parametrize("mode", FAULTS)
def test_trades_are_identical_to_stock(fault_runs, stock_run, mode, rel):
    rel.assert_same_as_stock(fault_runs[mode]["run"], stock_run)


@pytest.mark.parametrize("mode", EXCEPTION_FAULTS)
def test_exceptions_fall_back_are_counted_and_auto_disable(fault_runs, mode, rel):
    case = fault_runs[mode]
    name = f"faulty_{mode}"
    log = rel.log_of(case["run"])
    assert f"optimization '{name}' failed (RuntimeError: injected fault" in log
    assert "the original's result is used" in log
    assert f"optimization '{name}' disabled: {THRESHOLD} errors (threshold {THRESHOLD})" in log

    counted = totals(case["state"])
    optimized, original = counted[(name, "optimized")], counted[(name, "original")]
    # calls 1 and 2 fail (each falls back to the original), call 3 runs the original directly
    assert (optimized.calls, optimized.errors, optimized.fallbacks) == (THRESHOLD,) * 3
    assert original.calls == PAIRS and original.errors == 0
    assert ("tick_size", "optimized") not in counted  # the built-in was off

    disabled = TelemetryStore(case["state"] / FILENAME).disabled()
    assert disabled[name].startswith(f"{THRESHOLD} errors (threshold {THRESHOLD}), last: "
                                      "RuntimeError: injected fault")
    if case["status"] is not None:  # status reads that persisted state in a new process
        row = status_row(case["status"], name)
        assert row["active"] is False and row["installed"] is True
        assert row["reason"].startswith(
            f"auto-disabled: {THRESHOLD} errors (threshold {THRESHOLD})")


def test_wrong_typed_result_is_caught_in_shadow_mode(fault_runs, rel):
    case = fault_runs["wrong_type"]
    name = "faulty_wrong_type"
    log = rel.log_of(case["run"])
    assert (f"shadow check of '{name}' found a difference: result: type list != Series"
            in log)
    counted = totals(case["state"])
    assert counted[(name, "optimized")].calls == 1  # the shadow call; then it was switched off
    assert counted[(name, "optimized")].errors == 0  # a mismatch is not an exception
    assert counted[(name, "original")].calls == PAIRS  # every result came from the original
    disabled = TelemetryStore(case["state"] / FILENAME).disabled()
    assert disabled[name] == "shadow mismatch: result: type list != Series"
    row = status_row(case["status"], name)
    assert row["active"] is False
    assert row["reason"] == "auto-disabled: shadow mismatch: result: type list != Series"
    # the other optimizations ran in shadow mode too, and agreed with the originals
    assert "shadow check of 'max_drawdown'" not in log
    assert counted[("max_drawdown", "optimized")].calls > 0


def test_second_optimization_on_a_target_is_installed_in_the_same_router(fault_runs):
    """Documents activation's one-Router-per-target rule: every candidate on the target is
    installed in its Router; the built-in is inactive only because its own flag is off."""
    row = status_row(fault_runs["before"]["status"], "tick_size")
    assert row["installed"] is True and row["active"] is False
    assert row["reason"] == "flag off (env)"


# --- a writer killed mid-write -------------------------------------------------------------------

BATCH = 250
RECORDER = textwrap.dedent(f"""
    import os
    import sys
    from pathlib import Path

    from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings

    settings = MonitorSettings(flush_every=10**9, flush_interval=10**6, samples_per_flush=500,
                               busy_timeout=30)
    monitor = Monitor(settings, store_path=Path(sys.argv[1]) / "{FILENAME}",
                      run_id=f"killed-{{os.getpid()}}")
    flushes = 0
    while True:
        for i in range({BATCH}):
            monitor.record("kill_probe", "optimized", 0.001 + i * 1e-7)
            monitor.record("kill_probe", "original", 0.002 + i * 1e-7)
        if monitor.flush():
            flushes += 1
            print(flushes, flush=True)
""")


def _start_recorder(state: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(state)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=subprocess_env({}),
    )


def _kill_after_flushes(procs: list[subprocess.Popen], flushes: int, extra_delay: float) -> None:
    for proc in procs:
        for _ in range(flushes):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
    time.sleep(extra_delay)  # somewhere inside the next flushes
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    for proc in procs:
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL


def test_writer_killed_mid_write_leaves_a_usable_store(rel_workspace, stock_run, rel, tmp_path):
    state = rel.private_dir(tmp_path, "state")
    for delay in (0.007, 0.043):  # two concurrent writers per round, killed at once
        _kill_after_flushes([_start_recorder(state), _start_recorder(state)], 3, delay)

    with sqlite3.connect(f"file:{state / FILENAME}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = TelemetryStore(state / FILENAME)
    killed = [r["run"] for r in store.runs() if r["run"].startswith("killed-")]
    assert len(killed) == 4
    for run in killed:  # each flush is one transaction: whole batches only, paths in step
        per_run = {t.path: t.calls for t in store.totals(run) if t.name == "kill_probe"}
        assert per_run["optimized"] == per_run["original"]
        assert per_run["optimized"] % BATCH == 0 and per_run["optimized"] >= 3 * BATCH

    env = rel.plugin_env(state, FREQTRADE_OPT_LEVEL="standard")
    run = run_backtest(rel_workspace, env, name="after-kill")
    rel.assert_same_as_stock(run, stock_run)
    log = rel.log_of(run)
    assert "telemetry store" not in log and "Traceback" not in log

    report = rel.opt_cli(["report", "--json"], env, cwd=rel_workspace.root)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert not data["system"]["store"]["problem"]
    functions = {f["function"]: f for f in data["functions"]}
    probe = functions["kill_probe"]
    assert probe["optimized"]["calls"] == probe["original"]["calls"]
    assert probe["optimized"]["calls"] == sum(
        t.calls for t in store.totals() if t.name == "kill_probe" and t.path == "optimized")
    assert probe["optimized"]["errors"] == 0
    assert functions["tick_size"]["optimized"]["calls"] == PAIRS  # the new run, counted fully
    assert functions["tick_size"]["optimized"]["errors"] == 0
