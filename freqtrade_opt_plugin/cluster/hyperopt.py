"""``freqtrade hyperopt`` on a Dask cluster: a wrapper of ``Hyperopt.start``.

When a scheduler is configured, the wrapper connects, refuses a ``-j`` that is not a positive
batch size, checks every worker's versions, then runs Freqtrade's own ``start`` with this run's
``run_optimizer_parallel`` replaced (on the instance only) by `ClusterBatches`. Everything else is
Freqtrade's: the batch size (``-j``, through ``Parallel._effective_n_jobs``), asking Optuna per
batch, telling in asked order, saving each epoch to the ``.fthypt``, progress, early stop. Epochs
are independent and deterministic, so where they run cannot change a result: a lost worker's
epochs are rerun by Dask on another worker.

Without a scheduler the wrapper calls the original directly. It is installed and undone through
activation's `Patch` journal (`install`).
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from concurrent.futures import CancelledError
from typing import Any

from freqtrade_opt_plugin.cluster import settings as cluster_settings
from freqtrade_opt_plugin.cluster.settings import ClusterError


logger = logging.getLogger(__name__)

TARGET = "freqtrade.optimize.hyperopt.hyperopt:Hyperopt.start"
MARK = "__freqtrade_opt_cluster__"


def _operational(message: str) -> Exception:
    from freqtrade.exceptions import OperationalException

    return OperationalException(f"freqtrade-opt Dask cluster: {message}")


class ClusterBatches:
    """Replaces ``Hyperopt.run_optimizer_parallel`` for one run: each batch on the cluster."""

    def __init__(self, client: Any, hyperopt: Any, versions: dict[str, Any]) -> None:
        self.client = client
        self.hyperopt = hyperopt
        self.versions = versions
        self.context: Any = None
        self.run_id = uuid.uuid4().hex[:8]
        self.submitted = 0
        self.completed = 0
        self.overhead = 0.0
        self.per_worker: dict[str, int] = {}
        self.seconds = 0.0

    def _ship_data(self) -> str:
        from freqtrade_opt_plugin.cluster import shipping

        if self.context is None:
            payload = self.hyperopt.data_pickle_file.read_bytes()
            try:
                self.context = shipping.install(self.client, payload, self.versions)
            except (OSError, TimeoutError, CancelledError):
                raise
            except Exception as exc:
                raise ClusterError(f"could not set the workers up with the data: "
                                   f"{type(exc).__name__}: {exc}") from exc
            logger.info("freqtrade-opt: sent the preprocessed data (%.1f MB, sha256 %s) to the "
                        "cluster", len(payload) / 2**20, self.context.digest[:16])
        return self.context.digest

    def __call__(self, parallel: Any, asked: list[Any]) -> list[dict[str, Any]]:
        import cloudpickle
        from distributed import KilledWorker
        from distributed.comm.core import CommClosedError
        from freqtrade.optimize.hyperopt.hyperopt_logger import logger as mp_logger

        from freqtrade_opt_plugin.cluster.epochs import run_epoch
        from freqtrade_opt_plugin.cluster.shipping import WorkerMismatch

        start = time.perf_counter()
        try:
            digest = self._ship_data()
            blob = cloudpickle.dumps(self.hyperopt.hyperopter)
            futures = []
            for params in asked:
                self.submitted += 1
                futures.append(self.client.submit(
                    run_epoch, blob, digest, params, pure=False,
                    key=f"freqtrade-opt-epoch-{self.run_id}-{self.submitted}"))
            done = self.client.gather(futures)
        except WorkerMismatch as exc:
            raise self._lost(str(exc)) from exc
        except ClusterError as exc:
            raise self._lost(str(exc)) from exc
        except KilledWorker as exc:
            raise self._lost(f"an epoch killed every worker it ran on ({exc})") from exc
        except (OSError, TimeoutError, CancelledError) as exc:
            if self.client.status == "running" and not isinstance(
                    exc, CommClosedError | CancelledError):
                raise  # the epoch's own error, raised as a local worker would
            raise self._lost(f"lost the scheduler {self.client.scheduler.address} "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())})") from exc
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        # dispatch overhead of the batch: its wall time beyond its slowest epoch
        self.overhead += max(0.0, elapsed - max((item["seconds"] for item in done), default=0))
        results = []
        for item in done:
            for record in item["logs"]:
                mp_logger.handle(record)
            self.per_worker[item["worker"]] = self.per_worker.get(item["worker"], 0) + 1
            self.completed += 1
            results.append(item["result"])
        return results

    def _lost(self, what: str) -> Exception:
        saved = self.hyperopt.num_epochs_saved
        return _operational(
            f"{what}. The {saved} epochs evaluated before are saved in "
            f"'{self.hyperopt.results_file}'.")

    def close(self) -> None:
        if self.context is not None:
            from freqtrade_opt_plugin.cluster import shipping

            shipping.uninstall(self.client, self.context)
        if self.per_worker:
            logger.info("freqtrade-opt: %d epochs on the cluster in %.1f s, %.3f s per epoch "
                        "beyond the epochs themselves (%s)", self.completed, self.seconds,
                        self.overhead / self.completed,
                        ", ".join(f"{w}: {n}" for w, n in sorted(self.per_worker.items())))


def _check_jobs(config: dict[str, Any], scheduler: str) -> int:
    jobs = config.get("hyperopt_jobs", -1)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ClusterError(
            f"-j/--job-workers {jobs} is not allowed with a Dask cluster ({scheduler}): the "
            "batch size decides which parameters Optuna proposes, so it must not depend on the "
            "cluster's size. Pass a positive number, e.g. '-j 8' for 8 worker threads.")
    return jobs


def _describe(client: Any, jobs: int) -> None:
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    logger.info("freqtrade-opt: hyperopt epochs run on the Dask cluster %s (%d workers, %d "
                "threads), %d per batch (-j)", client.scheduler.address, len(workers), threads,
                jobs)
    crowded = sorted(a for a, w in workers.items() if w.get("nthreads", 1) > 1)
    if crowded:
        logger.warning("freqtrade-opt: workers %s have more than one thread; they run one epoch "
                       "at a time (start them with --nthreads 1)", ", ".join(crowded))


def run_on_cluster(hyperopt: Any, original: Any, settings: Any) -> Any:
    """Freqtrade's ``Hyperopt.start`` with every batch of epochs on the cluster."""
    from freqtrade_opt_plugin.cluster import versions

    try:
        jobs = _check_jobs(hyperopt.config, settings.scheduler)
        client = cluster_settings.connect(settings)
    except ClusterError as exc:
        raise _operational(str(exc)) from exc
    batches = None
    try:
        strategy_class = type(hyperopt.hyperopter.backtesting.strategy)
        modules = versions.by_reference_modules(strategy_class)
        versions.check_workers(client, modules)
        _describe(client, jobs)
        batches = ClusterBatches(client, hyperopt, versions.local_versions(modules))
        hyperopt.run_optimizer_parallel = batches
        return original(hyperopt)
    except ClusterError as exc:
        raise _operational(str(exc)) from exc
    finally:
        hyperopt.__dict__.pop("run_optimizer_parallel", None)
        if batches is not None:
            batches.close()
        client.close()


def _wrap(original: Any) -> Any:
    def start(self: Any) -> Any:
        settings = cluster_settings.load(self.config)
        if not settings.enabled:
            return original(self)
        return run_on_cluster(self, original, settings)

    start.__wrapped__ = original  # type: ignore[attr-defined]
    start.__doc__ = original.__doc__
    setattr(start, MARK, True)
    return start


def install(state: Any) -> None:
    """Wrap ``Hyperopt.start`` (once its module is imported), recorded in activation's journal."""
    from freqtrade_opt_plugin.activation import Patch, _resolve

    resolved = _resolve(TARGET)
    if resolved is None:
        return
    owner, attribute, original = resolved
    if not inspect.isfunction(original) or getattr(original, MARK, False):
        return
    wrapper = _wrap(original)
    setattr(owner, attribute, wrapper)
    state.patches.append(Patch(owner, attribute, original, wrapper))
