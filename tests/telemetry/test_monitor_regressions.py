"""Regression detection, the performance gate, persistence of auto-disables, and the hooks."""

from __future__ import annotations

import logging
import random
import time

import pluggy
import pytest

from freqtrade_opt_plugin import hookspecs
from freqtrade_opt_plugin import monitor as mon
from freqtrade_opt_plugin.monitor import (
    Monitor,
    MonitorSettings,
    RegressionAlert,
    detect_performance_regressions,
)
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel
from freqtrade_opt_plugin.telemetry_store import FILENAME


def make(tmp_path, run="run-1", **settings) -> Monitor:
    return Monitor(MonitorSettings(**settings), store_path=tmp_path / FILENAME, run_id=run)


def original(values: list[int]) -> int:
    return sum(v * v for v in values)


def slowed(values: list[int]) -> int:
    """The same result as `original`, deliberately about three times slower."""
    result = 0
    for _ in range(3):
        result = sum(v * v for v in values)
    return result


def fast(values: list[int]) -> int:
    return sum(v * v for v in values[: len(values) // 4]) + sum(
        v * v for v in values[len(values) // 4 :]
    )


def timed_calls(m: Monitor, name: str, path: str, fn, n: int) -> None:
    values = list(range(3000))
    for _ in range(n):  # timed like the Router: wall and thread CPU time
        start, cpu = time.perf_counter(), time.thread_time()
        fn(values)
        m.record(name, path, time.perf_counter() - start, cpu_seconds=time.thread_time() - cpu)


def optimization(name: str, threshold: float = 1.0, min_samples: int = 5) -> Optimization:
    return Optimization(
        name=name, target="math:fsum", replacement=slowed, tier=OptimizationLevel.STANDARD,
        fingerprints={}, performance_threshold=threshold, min_samples=min_samples,
    )


def test_a_deliberately_slowed_optimization_is_reported(tmp_path):
    m = make(tmp_path)
    for _ in range(40):  # interleaved, as a rollout below 100% would run them
        timed_calls(m, "squares", "original", original, 1)
        timed_calls(m, "squares", "optimized", slowed, 1)
    alerts = detect_performance_regressions(10.0, monitor=m, notify=False)
    assert [a.function for a in alerts] == ["squares"]
    alert = alerts[0]
    assert isinstance(alert, RegressionAlert)
    assert alert.kind == "slower_than_original"
    assert alert.degradation_percent > 100  # about +200%
    assert "FREQTRADE_OPT_SQUARES=false" in alert.recommendation
    assert alert.samples == alert.reference_samples == 40
    assert alert.p_value < 0.01


def test_a_faster_optimization_raises_no_alert(tmp_path):
    m = make(tmp_path)
    for _ in range(40):
        timed_calls(m, "squares", "original", slowed, 1)
        timed_calls(m, "squares", "optimized", original, 1)
    assert detect_performance_regressions(monitor=m, notify=False) == []


def test_one_slow_call_raises_no_alert(tmp_path):
    m = make(tmp_path)
    rng = random.Random(1)
    for _ in range(60):
        m.record("f", "original", rng.gauss(1e-3, 2e-5))
        m.record("f", "optimized", rng.gauss(5e-4, 2e-5))
    m.record("f", "optimized", 5.0)  # one pathological call (GC pause, swap, ...)
    assert detect_performance_regressions(monitor=m, notify=False) == []


def test_noise_around_the_threshold_raises_no_alert(tmp_path):
    m = make(tmp_path)
    rng = random.Random(2)
    for _ in range(100):
        m.record("f", "original", rng.gauss(1e-3, 1e-4))
        m.record("f", "optimized", rng.gauss(1.12e-3, 1e-4))  # median +12%, threshold 10%
    assert detect_performance_regressions(10.0, monitor=m, notify=False) == []


def test_too_few_samples_raise_no_alert(tmp_path):
    m = make(tmp_path, min_samples=20)
    for _ in range(19):
        m.record("f", "original", 1e-3)
        m.record("f", "optimized", 9e-3)
    assert detect_performance_regressions(monitor=m, notify=False) == []
    m.record("f", "original", 1e-3)
    m.record("f", "optimized", 9e-3)
    assert len(detect_performance_regressions(monitor=m, notify=False)) == 1


def test_slower_than_the_stored_baseline_of_earlier_runs(tmp_path):
    """A step that lasts three runs is reported; the alert names the runs and the measure."""
    rng = random.Random(3)
    for run, level in (("run-a", 1e-3), ("run-b", 1e-3), ("run-c", 1e-3), ("run-d", 1.6e-3),
                       ("run-e", 1.6e-3)):
        m = make(tmp_path, run=run)
        for _ in range(50):  # a 50% rollout: both paths in every run
            m.record("f", "optimized", rng.gauss(level, 3e-5))
            m.record("f", "original", rng.gauss(2e-3, 6e-5))
        m.flush()
        # one slowed run is not yet a regression
        assert detect_performance_regressions(monitor=m, notify=False) == []
    latest = make(tmp_path, run="run-f")  # e.g. after an upgrade
    for _ in range(50):
        latest.record("f", "optimized", rng.gauss(1.6e-3, 3e-5))
        latest.record("f", "original", rng.gauss(2e-3, 6e-5))
    alerts = detect_performance_regressions(monitor=latest, notify=False)
    assert [(a.function, a.kind) for a in alerts] == [("f", "slower_than_baseline")]
    assert alerts[0].degradation_percent == pytest.approx(60, abs=5)
    assert alerts[0].runs == ("run-d", "run-e", "run-f")
    assert alerts[0].reference_runs == ("run-a", "run-b", "run-c")
    # no CPU times were recorded: wall time, named as such
    assert alerts[0].measure == "optimized/original ratio of wall time per call"
    assert "run-d .. run-f" in alerts[0].recommendation
    assert alerts[0].reference_samples == 150 and alerts[0].samples == 150
    # a separate reader (the CLI) sees the same from the store alone
    reader = make(tmp_path, run="cli")
    assert [a.kind for a in detect_performance_regressions(monitor=reader, notify=False)] == [
        "slower_than_baseline"
    ]


def test_performance_gate(global_monitor):
    m = global_monitor
    opt = optimization("squares", threshold=1.0, min_samples=5)
    for _ in range(4):
        timed_calls(m, "squares", "original", original, 1)
        timed_calls(m, "squares", "optimized", slowed, 1)
    assert mon.check_performance_gate(opt) is None  # below min_samples
    for _ in range(6):
        timed_calls(m, "squares", "original", original, 1)
        timed_calls(m, "squares", "optimized", slowed, 1)
    reason = mon.check_performance_gate(opt)
    assert reason is not None and "threshold 1.00" in reason and "10/10 calls" in reason
    assert mon.check_performance_gate(optimization("squares", threshold=5.0)) is None
    assert mon.disabled() == {}  # the check itself has no side effect


def test_gate_tolerates_noise_at_the_threshold(global_monitor):
    m = global_monitor
    rng = random.Random(5)
    for _ in range(200):
        m.record("same", "original", rng.gauss(1e-3, 5e-5))
        m.record("same", "optimized", rng.gauss(1.005e-3, 5e-5))
    assert mon.check_performance_gate(optimization("same", threshold=1.0)) is None


def test_watched_gate_disables_persistently_until_reset(global_monitor, tmp_path):
    m = global_monitor
    opt = optimization("squares", threshold=1.0, min_samples=5)
    calls: list[tuple[str, str]] = []
    m.watch(opt, on_fail=lambda name, reason: calls.append((name, reason)))
    for _ in range(10):
        timed_calls(m, "squares", "original", original, 1)
        timed_calls(m, "squares", "optimized", slowed, 1)
    m.flush()
    assert [name for name, _ in calls] == ["squares"]
    assert "ratio" in mon.disabled()["squares"]
    assert m.is_disabled("squares")
    # another process (here: another monitor on the same store) sees it
    other = make(tmp_path, run="later")
    assert "squares" in other.disabled()
    # reset clears the state and the telemetry, so the gate does not fire again at once
    assert mon.reset("squares") == ["squares"]
    assert mon.disabled() == {} and make(tmp_path, run="x").disabled() == {}
    assert m.stats("squares")["optimized"].calls == 0
    assert m.store().timings("squares", "optimized", limit=100) == []


def test_disable_for_the_error_threshold_persists(global_monitor, tmp_path):
    mon.disable("broken", "3 errors (threshold 3), last: ValueError: x")
    mon.disable("broken", "a later reason")  # the first reason is kept
    assert mon.disabled() == {"broken": "3 errors (threshold 3), last: ValueError: x"}
    assert make(tmp_path, run="other").disabled() == mon.disabled()
    assert mon.reset() == ["broken"]
    assert mon.disabled() == {}


def test_disabled_on_a_missing_store_creates_nothing(global_monitor, tmp_path):
    assert mon.disabled() == {}
    assert list(tmp_path.iterdir()) == []


class _Collector:
    def __init__(self) -> None:
        self.records: list = []
        self.alerts: list = []
        self.disabled: list = []

    @pluggy.HookimplMarker("freqtrade_opt")
    def freqtrade_opt_records(self, records):
        self.records.extend(records)

    @pluggy.HookimplMarker("freqtrade_opt")
    def freqtrade_opt_regression(self, alert):
        self.alerts.append(alert)

    @pluggy.HookimplMarker("freqtrade_opt")
    def freqtrade_opt_disabled(self, name, reason):
        self.disabled.append((name, reason))


class _Broken:
    @pluggy.HookimplMarker("freqtrade_opt")
    def freqtrade_opt_records(self, records):
        raise RuntimeError("a broken exporter")


def test_hooks_receive_records_alerts_and_disables(global_monitor, monkeypatch, caplog):
    pm = pluggy.PluginManager("freqtrade_opt")
    pm.add_hookspecs(hookspecs)
    collector = _Collector()
    pm.register(collector)
    pm.register(_Broken())
    m = global_monitor
    m.set_plugin_manager(pm)
    monkeypatch.setattr(m.hooks, "_pm", pm)  # restored (to None) after the test
    opt = optimization("squares", threshold=1.0, min_samples=5)
    m.watch(opt)
    for _ in range(25):
        timed_calls(m, "squares", "original", original, 1)
        timed_calls(m, "squares", "optimized", slowed, 1)
    with caplog.at_level(logging.WARNING):
        m.flush()  # the broken exporter is logged, the others still get everything
    assert sum(r.calls for r in collector.records) == 50
    assert {r.path for r in collector.records} == {"optimized", "original"}
    assert [n for n, _ in collector.disabled] == ["squares"]
    assert [a.kind for a in collector.alerts] == ["performance_gate"]
    assert "freqtrade_opt_records hook implementation of plugin" in caplog.text
    alerts = detect_performance_regressions(monitor=m)
    assert alerts and collector.alerts[-1] == alerts[-1]


def test_owner_process_logs_regressions_at_exit(tmp_path, caplog):
    m = Monitor(MonitorSettings(), store_path=tmp_path / FILENAME, run_id="owner", owns_run=True)
    for _ in range(30):
        timed_calls(m, "squares", "original", original, 1)
        timed_calls(m, "squares", "optimized", slowed, 1)
    with caplog.at_level(logging.WARNING):
        m.close()
    assert "performance regression" in caplog.text and "'squares'" in caplog.text


def test_slowed_optimization_through_the_real_router_is_switched_off(tmp_path):
    """End to end with the real Router and Flags: 50% rollout, a 3x slower replacement."""
    flags_mod = pytest.importorskip("freqtrade_opt_plugin.flags")
    router_mod = pytest.importorskip("freqtrade_opt_plugin.router")
    settings_mod = pytest.importorskip("freqtrade_opt_plugin.settings")
    opt = Optimization(name="squares", target="m:original", replacement=slowed,
                       tier=OptimizationLevel.CONSERVATIVE, fingerprints={},
                       performance_threshold=1.0, min_samples=5)
    m = make(tmp_path, flush_every=20)
    flags = flags_mod.Flags(
        [opt],
        settings_mod.Settings(level=OptimizationLevel.STANDARD, percentage={"squares": 50}),
        m.disabled(), on_disable=m.disable,
    )
    m.watch(opt, on_fail=flags.disable)
    routed = router_mod.make_router(opt, original, flags, m)
    values = list(range(3000))
    results = {routed(values) for _ in range(200)}
    assert results == {original(values)}  # same result on both paths
    stats = m.stats("squares")
    assert flags.decisions["squares"].percentage == 0  # switched off by the gate ...
    assert "ratio" in flags.decisions["squares"].reason
    assert stats["original"].calls > 100  # ... early: the later calls ran the original
    assert "squares" in make(tmp_path, run="next").disabled()  # ... and persistently
