"""Several real processes writing to one store at once: every call is counted exactly once."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings
from freqtrade_opt_plugin.telemetry_store import FILENAME


REPO = Path(__file__).resolve().parents[2]


def _writer(state_dir: str, worker: int, calls: int, start) -> None:
    """A spawned process: records `calls` calls in bursts, flushing every 37 records."""
    os.environ["FREQTRADE_OPT_STATE_DIR"] = state_dir
    from freqtrade_opt_plugin import monitor

    m = Monitor(MonitorSettings(flush_every=37, busy_timeout=30), run_id="shared-run")
    start.wait()  # all writers begin together: maximal contention
    for i in range(calls):
        path = "optimized" if i % 4 else "original"
        m.record(f"fn{i % 3}", path, 0.001 + worker * 1e-4, error=(i % 50 == 0),
                 fallback=(i % 50 == 0), peak_bytes=1000 + i if i % 100 == 99 else None)
    monitor.disable(f"disabled-by-{worker % 2}", f"worker {worker}")
    m.flush()


def test_concurrent_spawned_writers_lose_nothing(tmp_path):
    workers, calls = 4, 3000
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_writer, args=(str(tmp_path), w, calls, start))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0

    with sqlite3.connect(tmp_path / FILENAME) as conn:
        total, errors, fallbacks, mem = conn.execute(
            "SELECT sum(calls), sum(errors), sum(fallbacks), sum(mem_samples) FROM totals"
        ).fetchone()
        per_path = dict(conn.execute("SELECT path, sum(calls) FROM totals GROUP BY path"))
        processes = conn.execute(
            "SELECT count(*), sum(calls) FROM processes WHERE run = 'shared-run'"
        ).fetchone()
        disabled = dict(conn.execute("SELECT name, reason FROM disabled"))
    assert total == workers * calls
    assert per_path == {"original": workers * calls // 4, "optimized": workers * calls * 3 // 4}
    assert errors == fallbacks == workers * len(range(0, calls, 50))
    assert mem == workers * len(range(99, calls, 100))
    assert processes == (workers, workers * calls)
    assert set(disabled) == {"disabled-by-0", "disabled-by-1"}


def _exit_only_writer(state_dir: str, calls: int, start) -> None:
    """A spawned process whose records reach the store only through the flush at exit."""
    os.environ["FREQTRADE_OPT_STATE_DIR"] = state_dir
    from freqtrade_opt_plugin.monitor import get_monitor

    m = get_monitor()
    start.wait()
    for _ in range(calls):
        m.record("at_exit", "optimized", 0.001)


def test_simultaneous_exit_flushes_create_the_store_without_losses(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_exit_only_writer, args=(str(tmp_path), 500, start))
             for _ in range(6)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    with sqlite3.connect(tmp_path / FILENAME) as conn:
        assert conn.execute("SELECT sum(calls) FROM totals").fetchone()[0] == 6 * 500


WORKER_MODULE = """
import os
from freqtrade_opt_plugin.monitor import get_monitor

def epoch(i):
    m = get_monitor()
    for k in range(250):
        m.record("hyper", "optimized" if k % 5 else "original", 0.0005)
    return os.getpid()
"""

MAIN_SCRIPT = """
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from joblib import Parallel, delayed
import hyper_worker
from freqtrade_opt_plugin.monitor import get_monitor

get_monitor().start_run()  # as Backtesting.__init__ does in freqtrade's main process
get_monitor().record("hyper", "original", 0.001)  # the main process's own call
with Parallel(n_jobs=2) as parallel:  # what freqtrade's hyperopt does: loky workers
    pids = set(parallel(delayed(hyper_worker.epoch)(i) for i in range(8)))
print(len(pids))
"""


def test_loky_workers_calls_are_counted_like_hyperopt_workers(tmp_path):
    (tmp_path / "hyper_worker.py").write_text(textwrap.dedent(WORKER_MODULE))
    (tmp_path / "main.py").write_text(textwrap.dedent(MAIN_SCRIPT))
    env = {**os.environ, "FREQTRADE_OPT_STATE_DIR": str(tmp_path / "state"),
           "PYTHONPATH": str(REPO)}
    env.pop("_FREQTRADE_OPT_RUN_ID", None)
    out = subprocess.run([sys.executable, str(tmp_path / "main.py")], env=env, check=True,
                         capture_output=True, text=True, timeout=300)
    worker_count = int(out.stdout.strip().splitlines()[-1])
    assert worker_count >= 1
    with sqlite3.connect(tmp_path / "state" / FILENAME) as conn:
        total = conn.execute("SELECT sum(calls) FROM totals").fetchone()[0]
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        processes = conn.execute("SELECT count(*) FROM processes").fetchone()[0]
    assert total == 8 * 250 + 1  # every worker call, flushed when the workers exited
    assert runs == 1  # workers belong to the main process's run
    assert processes == worker_count + 1


def test_a_run_is_exported_only_by_start_run(tmp_path):
    code = (
        "import os, subprocess, sys\n"
        "from freqtrade_opt_plugin.monitor import RUN_ENV, get_monitor\n"
        "m = get_monitor()\n"
        "first = m.run_id\n"
        "assert RUN_ENV not in os.environ  # importing the plugin exports nothing\n"
        "assert m.start_run() == first == os.environ[RUN_ENV] and m.start_run() == first\n"
        "child = subprocess.run([sys.executable, '-c', 'from freqtrade_opt_plugin.monitor "
        "import get_monitor as g; m = g(); print(m.run_id, m.owns_run, m.start_run() != "
        "m.run_id)'], capture_output=True, text=True, check=True).stdout.split()\n"
        "assert child[0] == first and child[1] == 'False', child\n"
    )
    env = {**os.environ, "FREQTRADE_OPT_STATE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    env.pop("_FREQTRADE_OPT_RUN_ID", None)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_a_real_hyperopt_counts_its_workers_calls(tmp_path):
    """`freqtrade hyperopt` (offline, 2 job workers): the workers' routed calls reach the store."""
    workspace = pytest.importorskip("freqtrade_opt_plugin.offline.workspace")
    ws = workspace.create_workspace(tmp_path / "ws", ["BTC/USDT", "ETH/USDT"], days=10)
    state = tmp_path / "state"
    run = workspace.run_hyperopt(
        ws, {"FREQTRADE_OPT_STATE_DIR": str(state), "FREQTRADE_OPT_LEVEL": "experimental"},
        epochs=4, jobs=2,
    )
    assert len(run.epochs) == 4
    with sqlite3.connect(state / FILENAME) as conn:
        total = conn.execute("SELECT coalesce(sum(calls), 0) FROM totals").fetchone()[0]
        by_process = dict(conn.execute("SELECT pid, sum(calls) FROM processes GROUP BY pid"))
    assert total > 0, "no routed call recorded: is any optimization installed?"
    assert sum(by_process.values()) == total
    assert len(by_process) >= 2  # the main process and at least one worker flushed
