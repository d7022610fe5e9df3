"""One hyperopt epoch on a Dask worker, as a loky worker runs it.

The task gets the main process's `HyperOptimizer` as cloudpickled bytes (a fresh copy per epoch,
exactly what loky unpickles per task), points it at this worker's copy of the data file and calls
Freqtrade's own ``generate_optimizer``. Log records of the epoch are collected with the logging
levels Freqtrade sets in its workers and returned with the result, for the main process's log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import cloudpickle

from freqtrade_opt_plugin.cluster import shipping


_epoch_lock = threading.Lock()  # one epoch at a time per process, whatever --nthreads says


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
        seconds = time.perf_counter() - start
    return {"result": result, "logs": collector.records, "worker": worker.address,
            "seconds": seconds}
