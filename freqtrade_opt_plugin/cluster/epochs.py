"""One hyperopt epoch on a Dask worker, as a loky worker runs it.

The task gets the main process's `HyperOptimizer` as cloudpickled bytes (a fresh copy per epoch,
exactly what loky unpickles per task), points it at this worker's copy of the data file and calls
Freqtrade's own ``generate_optimizer``. Log records of the epoch are collected with the logging
levels Freqtrade sets in its workers and returned with the result, for the main process's log.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import sys
import threading
import time
from typing import Any

import cloudpickle

from freqtrade_opt_plugin.cluster import shipping


_epoch_lock = threading.Lock()  # one epoch at a time per process, whatever --nthreads says
# what release_memory did in this process: epochs, gc frozen, trims that freed pages, seconds
_released: dict[str, Any] = {"epochs": 0, "frozen": False, "trimmed": 0, "seconds": 0.0}


class _Collector(logging.Handler):
    """Keeps the records emitted by one thread (the epoch's), made picklable."""

    def __init__(self, thread: int) -> None:
        super().__init__(logging.NOTSET)
        self.thread = thread
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            record.msg = record.getMessage()
        except Exception:  # a bad format string must not break the epoch
            record.msg = str(record.msg)
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def _worker_logging(verbosity: int) -> None:
    """The levels `freqtrade.optimize.hyperopt.hyperopt_logger.logging_mp_setup` sets."""
    level = logging.INFO if verbosity < 1 else logging.DEBUG
    logging.getLogger().setLevel(level)
    if level > logging.DEBUG:
        logging.getLogger("freqtrade").setLevel(logging.WARNING)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` (None elsewhere: musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_memory() -> dict[str, Any]:
    """Free what the finished epoch left behind and return the free heap to the OS.

    A full ``gc.collect`` frees the epoch's reference cycles now. The first call of a run then
    freezes (``gc.freeze``) everything alive (modules, the worker itself), so later collections
    scan only what the epochs created: milliseconds instead of ~0.2 s (`thaw` at the run's end).
    ``malloc_trim(0)`` returns the freed pages of every malloc arena (the epoch ran in a worker
    thread, with an arena of its own).
    Results cannot change: only unreachable objects and free pages are released.
    """
    start = time.perf_counter()
    unreachable = gc.collect()
    if not _released["frozen"] and shipping.runs_active():  # a run's end thaws it
        gc.freeze()
        _released["frozen"] = True
    trim = _malloc_trim()
    if trim is not None:
        _released["trimmed"] += trim(0)
    _released["epochs"] += 1
    _released["seconds"] += time.perf_counter() - start
    return {**_released, "unreachable": unreachable}


def thaw() -> None:
    """Undo `release_memory`'s ``gc.freeze`` (the last run on this worker ended)."""
    if _released["frozen"]:
        gc.unfreeze()
        _released["frozen"] = False


def released() -> dict[str, Any]:
    """How often `release_memory` ran in this process (``client.run`` it to see a worker's)."""
    return dict(_released)


def run_epoch(hyperopter_blob: bytes, digest: str, params: dict[str, Any]) -> dict[str, Any]:
    """Evaluate `params` with the pickled HyperOptimizer on this worker's data `digest`."""
    from distributed import get_worker

    worker = get_worker()
    path = shipping.data_file(digest, f"'{worker.name}' ({worker.address})")
    with _epoch_lock:
        start = time.perf_counter()
        hyperopter = cloudpickle.loads(hyperopter_blob)
        hyperopter.data_pickle_file = path
        _worker_logging(hyperopter.config.get("verbosity", 0))
        collector = _Collector(threading.get_ident())
        root = logging.getLogger()
        root.addHandler(collector)
        try:
            result = hyperopter.generate_optimizer(params)
        finally:
            root.removeHandler(collector)
            del hyperopter  # its cycles go in release_memory, not at Python's next full gc
            release_memory()
        seconds = time.perf_counter() - start
    return {"result": result, "logs": collector.records, "worker": worker.address,
            "seconds": seconds}
