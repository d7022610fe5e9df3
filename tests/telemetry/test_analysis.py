"""Regression rules and gates on recorded runs (seeded data, no sleeps), and the store's
promises: nothing recorded is lost silently, a version-1 store is upgraded in place."""

from __future__ import annotations

import logging
import random
import sqlite3

import pytest

from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel


def make(tmp_path, run: str, **settings) -> Monitor:
    return Monitor(MonitorSettings(**settings), store_path=tmp_path / "telemetry.sqlite3",
                   run_id=run, owns_run=True)


def one_run(tmp_path, run: str, *, optimized: float | None, original: float | None = None,
            calls: int = 40, seed: int = 0) -> list:
    """A run with CPU times around the given means (None: that path did not run); its alerts
    at the end of the run."""
    rng = random.Random(f"{run}-{seed}")
    m = make(tmp_path, run)
    for _ in range(calls):
        for path, mean in (("optimized", optimized), ("original", original)):
            if mean is not None:
                cpu = rng.gauss(mean, mean * 0.03)
                m.record("f", path, cpu * 1.2, cpu_seconds=cpu)
    m.flush()
    return m.detect_regressions(current_run=run)


def test_a_regression_is_a_step_that_lasts_three_runs(tmp_path):
    for i in range(3):
        assert one_run(tmp_path, f"r{i}", optimized=1e-3, original=2e-3) == []
    assert one_run(tmp_path, "slow-1", optimized=1.3e-3, original=2e-3) == []
    assert one_run(tmp_path, "slow-2", optimized=1.3e-3, original=2e-3) == []
    alerts = one_run(tmp_path, "slow-3", optimized=1.3e-3, original=2e-3)
    assert [(a.kind, a.runs) for a in alerts] == [
        ("slower_than_baseline", ("slow-1", "slow-2", "slow-3"))]
    assert alerts[0].reference_runs == ("r0", "r1", "r2")
    assert alerts[0].measure == "optimized/original ratio of thread CPU time per call"
    assert alerts[0].degradation_percent == pytest.approx(30, abs=5)


def test_a_busy_run_between_normal_ones_raises_nothing(tmp_path):
    """Load moves both paths of a run alike: the paired ratio stays where it was."""
    for i, factor in enumerate((1.0, 1.0, 1.6, 1.6, 1.0)):
        assert one_run(tmp_path, f"r{i}", optimized=1e-3 * factor,
                       original=2e-3 * factor) == []


def test_runs_at_level_disabled_are_no_evidence(tmp_path):
    for i in range(3):
        one_run(tmp_path, f"r{i}", optimized=1e-3)
    for i in range(3):  # only the original ran: nothing is said about the optimized path
        assert one_run(tmp_path, f"off{i}", optimized=None, original=5e-3) == []
    assert make(tmp_path, "reader").detect_regressions() == []


def test_without_pairs_no_alert_unless_asked_then_only_a_large_step(tmp_path):
    for i in range(3):
        one_run(tmp_path, f"r{i}", optimized=1e-3)
    for i in range(2):  # +50% absolute CPU time: what load alone produced in our tests
        assert one_run(tmp_path, f"busy{i}", optimized=1.5e-3) == []
    for i in range(3):
        assert one_run(tmp_path, f"slow-{i}", optimized=3e-3) == []  # off by default
    asked = make(tmp_path, "reader", unpaired_alerts=True)
    assert [(a.measure, a.runs) for a in asked.detect_regressions()] == [
        ("optimized thread CPU time per call", ("slow-0", "slow-1", "slow-2"))]
    assert make(tmp_path, "reader", unpaired_alerts=True,
                unpaired_threshold_percent=250).detect_regressions() == []


def test_noise_without_separation_raises_nothing(tmp_path):
    for i, level in enumerate((1.0, 1.25, 1.0, 1.3, 1.2)):  # up and down, no lasting step
        assert one_run(tmp_path, f"r{i}", optimized=1e-3 * level, original=2e-3) == []


def cache(gate_runs: int) -> Optimization:
    return Optimization(name="f", target="m:f", replacement=len, tier=OptimizationLevel.STANDARD,
                        fingerprints={}, performance_threshold=1.0, gate_runs=gate_runs)


def test_a_caches_gate_judges_hits_and_misses_together(tmp_path):
    """Cold run: every call is a miss (original + storing: slower). Warm run: hits."""
    one_run(tmp_path, "standard", optimized=None, original=2e-3)  # level below its tier
    cold = make(tmp_path, "cold")
    for _ in range(30):
        cold.record("f", "optimized", 2.6e-3, cpu_seconds=2.4e-3)  # misses
    cold.flush()
    assert "ratio 1.20 > threshold" in cold.gate(cache(gate_runs=1))  # the old verdict
    assert cold.gate(cache(gate_runs=2)) is None  # a cache waits for a second run
    warm = make(tmp_path, "warm")
    for _ in range(30):
        warm.record("f", "optimized", 2.2e-4, cpu_seconds=2e-4)  # hits
    warm.flush()
    assert warm.gate(cache(gate_runs=2)) is None  # (2.4 + 0.2) / 2 = 1.3 ms < 2 ms


def test_a_cache_that_never_hits_is_switched_off(tmp_path):
    one_run(tmp_path, "standard", optimized=None, original=2e-3)
    for run in ("cold-1", "cold-2"):
        m = make(tmp_path, run)
        for _ in range(30):
            m.record("f", "optimized", 2.6e-3, cpu_seconds=2.4e-3 + random.random() * 1e-5)
        m.flush()
    reason = m.gate(cache(gate_runs=2))
    assert reason is not None and "over 2 run(s)" in reason and "mean thread CPU time" in reason


def test_a_locked_store_keeps_records_for_the_next_flush(tmp_path):
    m = make(tmp_path, "run", busy_timeout=0.2)
    m.record("f", "optimized", 1e-3, cpu_seconds=1e-3)
    assert m.flush()
    locker = sqlite3.connect(tmp_path / "telemetry.sqlite3", timeout=0.1)
    locker.execute("BEGIN EXCLUSIVE")
    for _ in range(20):
        m.record("f", "optimized", 1e-3, cpu_seconds=1e-3)
    assert not m.flush()  # locked: kept
    locker.rollback()
    assert m.flush()
    assert m.store().totals()[0].calls == 21 and m.store().totals()[0].cpu_calls == 21


def test_a_store_locked_at_exit_says_what_was_not_stored(tmp_path, caplog):
    m = make(tmp_path, "run", busy_timeout=0.2)
    m.record("f", "original", 1e-3)
    assert m.flush()
    locker = sqlite3.connect(tmp_path / "telemetry.sqlite3", timeout=0.1)
    locker.execute("BEGIN EXCLUSIVE")
    for _ in range(7):
        m.record("f", "optimized", 1e-3)
    with caplog.at_level(logging.WARNING):
        m.close()
    locker.rollback()
    lost = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert len(lost) == 1 and "f/optimized: 7" in lost[0], caplog.text


V1_SCHEMA = """CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY, started REAL NOT NULL, pid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS totals (
    name TEXT NOT NULL, path TEXT NOT NULL, run TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
    fallbacks INTEGER NOT NULL DEFAULT 0, total_seconds REAL NOT NULL DEFAULT 0,
    timed_calls INTEGER NOT NULL DEFAULT 0, timed_seconds REAL NOT NULL DEFAULT 0,
    mem_samples INTEGER NOT NULL DEFAULT 0, mem_peak_sum INTEGER NOT NULL DEFAULT 0,
    mem_peak_max INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY (name, path, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, path TEXT NOT NULL,
    run TEXT NOT NULL, ts REAL NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS timings_by_function ON timings (name, path, id);
CREATE TABLE IF NOT EXISTS memory (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, path TEXT NOT NULL,
    run TEXT NOT NULL, ts REAL NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_by_function ON memory (name, path, id);
CREATE TABLE IF NOT EXISTS processes (
    run TEXT NOT NULL, pid INTEGER NOT NULL, calls INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, PRIMARY KEY (run, pid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS disabled (
    name TEXT PRIMARY KEY, reason TEXT NOT NULL, ts REAL NOT NULL, pid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"""


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    path = tmp_path / "telemetry.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
        conn.execute("INSERT INTO runs VALUES ('old', 1.0, 1)")
        conn.execute("INSERT INTO totals (name, path, run, calls, first_seen, last_seen) "
                     "VALUES ('f', 'original', 'old', 5, 1.0, 1.0)")
        conn.execute("PRAGMA user_version = 1")
    path.chmod(0o600)
    m = make(tmp_path, "new")
    m.record("f", "original", 1e-3, cpu_seconds=1e-3)
    assert m.flush()
    totals = m.store().totals()
    assert [(t.calls, t.cpu_calls) for t in totals] == [(6, 1)]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_cpu_time_is_measured_on_long_calls_and_sampled_on_short_ones(tmp_path):
    """Measuring CPU time is a system call (~0.3-2 µs): short calls get it on every k-th call."""
    m = make(tmp_path, "run")
    for _ in range(512):
        for name, seconds in (("short", 5e-6), ("long", 1e-3)):
            start = m.cpu_start(name, "optimized")
            m.record(name, "optimized", seconds,
                     cpu_seconds=None if start is None else seconds)
    assert m.stats("long")["optimized"].cpu_calls == 512
    # every call until the interval is first computed (at call 256), then every 100th
    assert m.stats("short")["optimized"].cpu_calls == 255 + 3
    assert m.cpu_start("short", "original") is not None  # counted per path
