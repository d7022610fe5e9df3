"""The in-process monitor: counting, sampling policy, batching, threads, fork, settings, bounds."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import threading
import tracemalloc

import pytest

from freqtrade_opt_plugin import monitor as mon
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings, PathStats
from freqtrade_opt_plugin.telemetry import recorder
from freqtrade_opt_plugin.telemetry_store import FILENAME


def make(tmp_path, run="run-1", **settings) -> Monitor:
    return Monitor(MonitorSettings(**settings), store_path=tmp_path / FILENAME, run_id=run)


def db_totals(path) -> dict[tuple[str, str], tuple]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name, path, sum(calls), sum(errors), sum(fallbacks), sum(timed_calls), "
            "sum(mem_samples) FROM totals GROUP BY name, path"
        ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def test_record_counts_calls_errors_fallbacks_and_clean_timings(tmp_path):
    m = make(tmp_path, persist=False)
    for seconds in (0.001, 0.002, 0.003):
        m.record("f", "optimized", seconds)
    m.record("f", "optimized", 0.5, error=True, fallback=True)  # a failed attempt
    m.record("f", "original", 0.004)
    m.record("f", "original", 0.9, peak_bytes=12345)  # memory-traced: slower, not timed

    opt, orig = m.stats("f")["optimized"], m.stats("f")["original"]
    assert (opt.calls, opt.errors, opt.fallbacks) == (4, 1, 1)
    assert opt.median() == 0.002 and opt.timed_calls == 3
    assert opt.total_seconds == pytest.approx(0.506)
    assert opt.mean() == pytest.approx(0.002)
    assert (orig.calls, orig.timed_calls, orig.mem_samples, orig.mem_peak_max) == (2, 1, 1, 12345)
    assert orig.median() == 0.004
    assert m.names() == ["f"]
    counters = m.counters()["f"]
    assert counters["optimized_calls"] == 4 and counters["original_calls"] == 2
    assert counters["adoption_rate"] == pytest.approx(4 / 6)


def test_stats_of_an_unknown_name_is_empty_and_not_registered(tmp_path):
    m = make(tmp_path, persist=False)
    stats = m.stats("nothing")
    assert stats["optimized"].calls == 0 and stats["original"].median() is None
    assert m.names() == []


def test_record_never_raises_and_warns_once_on_a_bad_path(tmp_path, caplog):
    m = make(tmp_path, persist=False)
    with caplog.at_level(logging.WARNING):
        m.record("f", "sideways", 0.1)
        m.record("f", "sideways", 0.1)
    assert len([r for r in caplog.records if "could not record" in r.message]) == 1
    m.record("f", "optimized", 0.1)
    assert m.stats("f")["optimized"].calls == 1


def test_memory_sampling_is_at_most_every_kth_call_per_name(tmp_path):
    m = make(tmp_path, persist=False, memory_sample_rate=0.01, memory_budget=1.0)
    picked = []
    for i in range(1, 351):
        if m.should_sample_memory("f"):
            picked.append(i)
        m.record("f", "optimized", 1e-3)
    assert picked == [100, 200, 300]
    for _ in range(99):
        assert not m.should_sample_memory("g")  # its own counter ...
        m.record("g", "original", 1e-3)
    assert m.should_sample_memory("g")
    assert not make(tmp_path, persist=False, memory_sample_rate=0).should_sample_memory("f")


def test_memory_sampling_needs_timings_first(tmp_path):
    m = make(tmp_path, persist=False, memory_sample_rate=1.0, memory_budget=1.0)
    assert not m.should_sample_memory("f")  # no idea yet what a call costs
    m.record("f", "optimized", 1e-3)
    assert not m.should_sample_memory("f")  # 20 x 1 ms > the 1 ms spent so far
    for _ in range(30):
        m.record("f", "optimized", 1e-3)
    assert m.should_sample_memory("f")


def test_memory_tracing_stays_within_its_time_budget(tmp_path):
    m = make(tmp_path, persist=False, memory_sample_rate=1.0, memory_budget=0.01)
    traced = traced_time = total = 0.0
    for _ in range(20_000):
        if m.should_sample_memory("f"):
            seconds, traced, traced_time = 3e-3, traced + 1, traced_time + 3e-3  # 3x slower
            m.record("f", "optimized", seconds, peak_bytes=1000)
        else:
            seconds = 1e-3
            m.record("f", "optimized", seconds)
        total += seconds
    assert traced_time <= 0.01 * total
    assert traced >= 40  # the learnt 3x cost allows far more samples than the 20x first guess
    assert m.stats("f")["optimized"].mem_samples == traced


def test_memory_sampling_never_disturbs_someone_elses_tracing(tmp_path):
    m = make(tmp_path, persist=False, memory_sample_rate=1.0, memory_budget=1.0)
    for _ in range(50):
        m.record("f", "optimized", 1e-3)
    tracemalloc.start()
    try:
        assert not m.should_sample_memory("f")
    finally:
        tracemalloc.stop()
    assert m.should_sample_memory("f")


def test_memory_trace_measures_a_real_allocation():
    mon.start_memory_trace()
    block = bytearray(8 * 2**20)
    del block
    peak = mon.stop_memory_trace()
    assert peak >= 8 * 2**20
    assert not tracemalloc.is_tracing()


def test_flush_writes_each_record_once(tmp_path):
    m = make(tmp_path)
    for i in range(30):
        m.record("f", "optimized", 0.001 * (i + 1))
    m.record("f", "original", 0.01, error=True, fallback=True)
    assert m.flush()
    assert m.flush()  # nothing new: nothing written twice
    m.record("f", "optimized", 0.002, peak_bytes=100)
    assert m.flush()
    assert db_totals(tmp_path / FILENAME) == {
        ("f", "optimized"): (31, 0, 0, 30, 1),
        ("f", "original"): (1, 1, 1, 0, 0),
    }
    store = m.store()
    assert sorted(store.timings("f", "optimized", limit=100)) == [
        pytest.approx(0.001 * (i + 1)) for i in range(30)
    ]
    assert store.peaks("f", "optimized", limit=10) == [100]


def test_flush_happens_by_count_and_by_interval(tmp_path, monkeypatch):
    m = make(tmp_path, flush_every=10, flush_interval=3600)
    for _ in range(9):
        m.record("f", "optimized", 0.001)
    assert not (tmp_path / FILENAME).exists()
    m.record("f", "optimized", 0.001)
    assert db_totals(tmp_path / FILENAME)[("f", "optimized")][0] == 10

    clock = [1000.0]
    monkeypatch.setattr(recorder, "_monotonic", lambda: clock[0])
    m2 = make(tmp_path, run="run-2", flush_every=10**6, flush_interval=5)
    m2.record("g", "optimized", 0.001)
    assert ("g", "optimized") not in db_totals(tmp_path / FILENAME)
    clock[0] += 6
    m2.record("g", "optimized", 0.001)
    assert db_totals(tmp_path / FILENAME)[("g", "optimized")][0] == 2


def test_threads_record_without_losing_calls(tmp_path):
    m = make(tmp_path, flush_every=997)
    per_thread = 20_000

    def work(k: int) -> None:
        for i in range(per_thread):
            m.record("f", "optimized" if (i + k) % 3 else "original", 1e-6)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = m.stats("f")
    assert stats["optimized"].calls + stats["original"].calls == 4 * per_thread
    assert m.flush()
    totals = db_totals(tmp_path / FILENAME)
    assert totals[("f", "optimized")][0] + totals[("f", "original")][0] == 4 * per_thread
    assert totals[("f", "optimized")][0] == stats["optimized"].calls


def test_stored_samples_are_bounded_and_old_runs_folded(tmp_path):
    for run in range(5):
        m = make(tmp_path, run=f"run-{run}", max_samples=50, max_runs=2, samples_per_flush=40)
        for _ in range(3):
            for i in range(100):
                m.record("f", "optimized", 0.001 + i * 1e-6)
            m.flush()
    with sqlite3.connect(tmp_path / FILENAME) as conn:
        stored = conn.execute("SELECT sum(n) FROM timings").fetchone()[0]
        runs = [r[0] for r in conn.execute("SELECT run FROM runs ORDER BY started")]
        per_run = dict(conn.execute("SELECT run, sum(calls) FROM totals GROUP BY run"))
    assert 50 <= stored < 50 + 40  # the newest 50 values (whole flushes) are kept
    assert runs == ["run-3", "run-4"]
    assert per_run == {"": 900, "run-3": 300, "run-4": 300}  # nothing lost by folding
    assert len(make(tmp_path, max_samples=50).store().timings("f", "optimized", limit=1000)) < 90


def test_invalid_settings_are_reported_and_defaults_used(monkeypatch, caplog):
    monkeypatch.setenv("FREQTRADE_OPT_MONITOR_MEMORY_SAMPLE_RATE", "2")
    monkeypatch.setenv("FREQTRADE_OPT_MONITOR_FLUSH_EVERY", "lots")
    with caplog.at_level(logging.WARNING):
        settings = MonitorSettings()
    assert settings.memory_sample_rate == 0.02 and settings.flush_every == 10_000
    text = caplog.text
    assert "FREQTRADE_OPT_MONITOR_MEMORY_SAMPLE_RATE='2'" in text and "le 1.0" in text
    assert "FREQTRADE_OPT_MONITOR_FLUSH_EVERY='lots'" in text


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FREQTRADE_OPT_MONITOR_MEMORY_SAMPLE_RATE", "0.5")
    monkeypatch.setenv("FREQTRADE_OPT_MONITOR_PERSIST", "false")
    settings = MonitorSettings()
    assert settings.memory_sample_rate == 0.5 and settings.persist is False
    assert Monitor(settings, run_id="x").store() is None


def test_merged_stats_of_several_threads():
    a, b = PathStats(), PathStats()
    for v in (1.0, 2.0):
        a.calls += 1
        a.recent.append(v)
    b.calls += 1
    b.recent.append(3.0)
    merged = PathStats.merged([a, b])
    assert merged.calls == 3 and merged.median() == 2.0
    assert PathStats.merged([a]) is a


def _fork_child(n: int) -> None:
    m = mon.get_monitor()
    for _ in range(n):
        m.record("forked", "optimized", 0.001)
    # leaves through os._exit (multiprocessing fork): the Finalize hook flushes


def test_fork_children_flush_their_own_calls_and_not_the_parents(global_monitor, tmp_path):
    m = global_monitor
    for _ in range(50):
        m.record("forked", "original", 0.002)  # unflushed in the parent when it forks
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_fork_child, args=(100,)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    m.flush()
    totals = db_totals(tmp_path / FILENAME)
    assert totals[("forked", "optimized")][0] == 300
    assert totals[("forked", "original")][0] == 50  # once, by the parent


def test_exit_flush_of_a_plain_process(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "FREQTRADE_OPT_STATE_DIR": str(tmp_path)}
    env.pop("_FREQTRADE_OPT_RUN_ID", None)
    code = (
        "from freqtrade_opt_plugin.monitor import get_monitor\n"
        "m = get_monitor()\n"
        "for _ in range(123): m.record('exiting', 'optimized', 0.001)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120,
                   cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert db_totals(tmp_path / FILENAME)[("exiting", "optimized")][0] == 123
