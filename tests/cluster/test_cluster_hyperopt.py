"""`freqtrade hyperopt` on a real Dask cluster gives the same epochs as a local run."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
import weakref
from pathlib import Path

import cloudpickle
import pytest
from rich.console import Console

from freqtrade_opt_plugin.cluster import epochs, shipping
from freqtrade_opt_plugin.cluster.status import cluster_status, print_cluster
from freqtrade_opt_plugin.offline.compare import compare_hyperopt
from freqtrade_opt_plugin.offline.workspace import HarnessError, run_hyperopt
from tests.cluster.conftest import EPOCHS, JOBS, LOG_LINE, RANDOM_STATE, cluster_env


def _run(workspace, cluster, name, **kwargs):
    return run_hyperopt(workspace, cluster_env(cluster), epochs=EPOCHS, jobs=JOBS,
                        random_state=RANDOM_STATE, name=name, **kwargs)


def _pids(client) -> dict[str, int]:
    return client.run(os.getpid)


# the helpers below run on the workers, which cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _run_files(dask_worker) -> list[str]:
    return sorted(p.name for p in Path(dask_worker.local_directory).glob("freqtrade-opt-*"))


def _epoch_keys(data) -> list[str]:
    return [str(k) for k in data if str(k).startswith("freqtrade-opt-epoch-")]


def test_cluster_epochs_identical_to_local_and_data_never_read_by_path(
        workspace, local_run, cluster):
    with cluster.client() as client:
        released_before = client.run(epochs.released)
    run = _run(workspace, cluster, "dask")
    verdict = compare_hyperopt(local_run, run)
    assert verdict.identical, verdict.first_difference
    assert len(run.epochs) == EPOCHS
    log = run.log_path.read_text()
    assert "epochs run on the Dask cluster" in log
    assert f"{EPOCHS} epochs on the cluster" in log
    with cluster.client() as client:
        pids = _pids(client)
        addresses = list(pids)
        for address in addresses:  # both workers evaluated epochs
            assert f"{address}: " in log
        # the strategy's log lines, written in the workers, reached the user's log
        logged = [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if LOG_LINE in line]
        assert len(logged) >= EPOCHS and set(logged) == set(pids.values())
        # the workers cannot read the main process's data file: the epochs used their own copy
        data_file = workspace.user_data / "hyperopt_results" / "hyperopt_tickerdata.pkl"
        assert data_file.is_file()
        opened = client.run(lambda: open(data_file, "rb").close(), on_error="return")
        assert all(isinstance(v, PermissionError) for v in opened.values()), opened
        # the run's copies were removed from the workers at the end
        left = client.run(_run_files)
        assert left == {a: [] for a in addresses}
        # every epoch released its memory on its worker (cycles collected, heap trimmed) ...
        released = client.run(epochs.released)
        assert sum(released[a]["epochs"] - released_before[a]["epochs"]
                   for a in addresses) == EPOCHS
        # the worker is left as found: nothing frozen, its profiler running again
        assert not any(r["frozen"] for r in released.values())
        assert set(client.run(shipping.profiler_running).values()) == {True}
        # ... and no epoch's result is kept by the cluster once the run has it
        deadline = time.monotonic() + 30  # the finished run's client disconnects asynchronously
        while client.run_on_scheduler(lambda dask_scheduler: _epoch_keys(dask_scheduler.tasks)):
            assert time.monotonic() < deadline, "the scheduler still holds epochs of a done run"
            time.sleep(0.1)
        held = client.run(lambda dask_worker: _epoch_keys(dask_worker.data))
        assert held == {a: [] for a in addresses}


def _profiler_and_collection(dask_worker) -> dict:
    """On a worker: whether its profiler runs, and whether `release_memory` frees a cycle."""

    class Node:
        pass

    node = Node()
    node.self = node
    ref = weakref.ref(node)
    del node
    epochs.release_memory()
    return {"profiler": shipping.profiler_running(dask_worker), "cycle freed": ref() is None,
            "frozen": gc.get_freeze_count() > 0}


def test_run_pauses_the_worker_profiler_and_epochs_free_their_cycles(cluster):
    """Dask's profiler keeps a call tree per second of epochs: paused while a run is set up."""
    context = shipping.RunContext(b"data of a run", {}, {})
    with cluster.client() as client:
        assert set(client.run(shipping.profiler_running).values()) == {True}
        client.register_plugin(context)
        try:
            during = client.run(_profiler_and_collection)
        finally:
            shipping.uninstall(client, context)
        assert set(map(str, during.values())) == {
            str({"profiler": False, "cycle freed": True, "frozen": True})}
        assert set(client.run(shipping.profiler_running).values()) == {True}
        assert set(client.run(gc.get_freeze_count).values()) == {0}


def test_killed_worker_epochs_rerun_elsewhere_results_identical(workspace, local_run, cluster):
    killed: list[str] = []
    finished = threading.Event()

    def kill_first_busy_worker() -> None:
        with cluster.client() as client:
            pids = _pids(client)
            while not finished.is_set() and not killed:
                for address, keys in client.processing().items():
                    epochs = [k for k in keys if str(k).startswith("freqtrade-opt-epoch-")]
                    # mid-run: an epoch of the second batch is running on this worker
                    if any(int(str(k).rsplit("-", 1)[1]) > JOBS for k in epochs) \
                            and address in pids:
                        os.kill(pids[address], signal.SIGKILL)
                        killed.append(address)
                        break
                time.sleep(0.02)

    killer = threading.Thread(target=kill_first_busy_worker)
    killer.start()
    try:
        run = _run(workspace, cluster, "dask-killed")
    finally:
        finished.set()
        killer.join()
    assert killed, "no epoch of the second batch was seen running"
    verdict = compare_hyperopt(local_run, run)
    assert verdict.identical, verdict.first_difference
    cluster.wait_for_workers(2)  # the nanny restarted the killed worker


def test_worker_with_other_plugin_version_is_named_and_refused(
        workspace, cluster, worker_env, monkeypatch):
    stale = cluster.start_worker("stale", {"FTOPT_TEST_FAKE_PLUGIN_VERSION": "0.0.0+stale"})
    try:
        cluster.wait_for_workers(3)
        # freqtrade-opt status shows it too
        monkeypatch.setenv("FREQTRADE_OPT_DASK_SCHEDULER", cluster.address)
        shown = cluster_status()
        assert shown["error"] is None
        rows = {w["name"]: w for w in shown["workers"]}
        assert set(rows) == {"w1", "w2", "stale"}
        assert all(w["threads"] == 1 for w in rows.values())
        assert rows["w1"]["problems"] == [] and rows["w2"]["problems"] == []
        assert rows["stale"]["versions"]["freqtrade-opt-plugin"] == "0.0.0+stale"
        console = Console(record=True, width=300)
        print_cluster(console, shown)
        assert "no: freqtrade-opt-plugin 0.0.0+stale" in console.export_text()
        with pytest.raises(HarnessError) as failure:
            _run(workspace, cluster, "dask-stale")
        message = str(failure.value)
        assert "worker 'stale'" in message
        assert "freqtrade-opt-plugin 0.0.0+stale" in message
        assert "Hyperopting with data" not in message  # refused before the data was prepared
    finally:
        stale.stop()
    with cluster.client() as client:
        deadline = time.monotonic() + 30
        while len(client.scheduler_info(n_workers=-1)["workers"]) > 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_all_cores_batch_size_is_refused(workspace, cluster):
    with pytest.raises(HarnessError) as failure:
        run_hyperopt(workspace, cluster_env(cluster), epochs=2, jobs=-1, name="dask-all")
    assert "-j/--job-workers -1 is not allowed with a Dask cluster" in str(failure.value)


# Last in this module: it ends the module's cluster (kills its scheduler).
def test_lost_scheduler_is_a_clear_error_and_epochs_so_far_are_saved(
        workspace, local_run, cluster):
    results = workspace.user_data / "hyperopt_results"
    before = set(results.glob("*.fthypt"))
    finished = threading.Event()

    def kill_scheduler_after_first_batch() -> None:
        while not finished.is_set():
            new = set(results.glob("*.fthypt")) - before
            if new and len(next(iter(new)).read_text().splitlines()) >= JOBS:
                cluster.scheduler.proc.kill()
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_scheduler_after_first_batch)
    killer.start()
    try:
        with pytest.raises(HarnessError) as failure:  # many epochs: the kill comes mid-run
            run_hyperopt(workspace, cluster_env(cluster), epochs=5 * EPOCHS, jobs=JOBS,
                         random_state=RANDOM_STATE, name="dask-lost")
    finally:
        finished.set()
        killer.join()
    message = "".join(str(failure.value).split())  # the console log wraps long lines anywhere
    assert f"lostthescheduler{cluster.address}" in message, message
    (saved_file,) = set(results.glob("*.fthypt")) - before
    assert "".join(f"saved in '{saved_file}'".split()) in message, message
    saved = [json.loads(line) for line in saved_file.read_text().splitlines()]
    assert JOBS <= len(saved) < 5 * EPOCHS
    # the epochs saved before the loss are those of the local run (as far as it went)
    compared = min(len(saved), EPOCHS)
    verdict = compare_hyperopt(local_run.epochs[:compared], saved[:compared])
    assert verdict.identical, verdict.first_difference
