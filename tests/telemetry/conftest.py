"""A telemetry store with the history a user accumulates: runs at several levels, a partial
rollout, a lasting slowdown, an auto-disable. Built by real `Monitor`s (seeded, no sleeps)."""

from __future__ import annotations

import random

import pytest

from freqtrade_opt_plugin import monitor as mon
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings


#: (level, fast_fn optimized CPU per call relative to its original, share optimized)
HISTORY = (
    ("standard", 0.5, 0.5),
    ("standard", 0.5, 0.5),
    ("standard", 0.5, 0.5),
    ("aggressive", 0.8, 0.5),  # the replacement got slower (e.g. after an upgrade) ...
    ("aggressive", 0.8, 0.5),
    ("aggressive", 0.8, 0.5),  # ... and stayed slower: a regression
    ("disabled", None, 0.0),  # nothing optimized: no evidence either way
)


def record_history(state_dir, history=HISTORY, seed: int = 11) -> list[str]:
    """Write `history` to the store under `state_dir`; the run ids, oldest first."""
    rng = random.Random(seed)
    runs = []
    for i, (level, ratio, share) in enumerate(history):
        m = Monitor(MonitorSettings(), store_path=state_dir / "telemetry.sqlite3",
                    run_id=f"run-{i + 1}")
        m.run_started = 1_790_000_000.0 + 600 * i
        active = [] if level == "disabled" else ["fast_fn", "slow_fn"]
        m.set_status_provider(lambda level=level, active=active: {"level": level,
                                                                   "active": active})
        for _ in range(60):
            base = rng.gauss(2e-3, 4e-5)
            if ratio is not None and rng.random() < share:
                cpu = base * ratio
                m.record("fast_fn", "optimized", cpu * 1.1, cpu_seconds=cpu)
            else:
                m.record("fast_fn", "original", base * 1.1, cpu_seconds=base)
            slow = rng.gauss(1e-3, 2e-5)
            if level == "disabled":
                m.record("slow_fn", "original", slow * 1.1, cpu_seconds=slow)
            else:
                m.record("slow_fn", "optimized", slow * 1.3, cpu_seconds=slow * 1.2,
                         error=rng.random() < 0.05, fallback=rng.random() < 0.05)
        assert m.flush()
        runs.append(m.run_id)
    Monitor(MonitorSettings(), store_path=state_dir / "telemetry.sqlite3",
            run_id="cli").disable("slow_fn", "optimized/original ratio 1.20 > threshold 1.00")
    return runs


@pytest.fixture
def history_state(tmp_path, monkeypatch):
    """FREQTRADE_OPT_STATE_DIR with `HISTORY` recorded; the process monitor reads it."""
    monkeypatch.setenv("FREQTRADE_OPT_STATE_DIR", str(tmp_path))
    runs = record_history(tmp_path)
    m = mon.get_monitor()
    m.reset()
    yield tmp_path, runs
    m.forget()


@pytest.fixture
def global_monitor(tmp_path, monkeypatch):
    """The process-wide monitor on a fresh store in `tmp_path`, outside any run; left clean and
    its run state restored afterwards."""
    monkeypatch.setenv("FREQTRADE_OPT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv(mon.RUN_ENV, raising=False)
    m = mon.get_monitor()
    saved = (m.run_id, m.owns_run, m._run_exported, m.run_started)  # no public setter
    m.forget()
    yield m
    m.forget()
    m.run_id, m.owns_run, m._run_exported, m.run_started = saved
