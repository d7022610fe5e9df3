"""``Hyperopt.start`` with the main process's long-lived objects frozen out of the garbage
collector (``gc.freeze``) while the epochs run.

After every batch of epochs Freqtrade's ``Hyperopt.start`` calls ``gc.collect()`` in the main
process while the workers wait for the next batch. A full collection traverses every tracked
object: the imported modules (Freqtrade, pandas, optuna, ccxt, ...), the strategy and the
backtesting objects, a few hundred thousand objects that live for the whole run. Measured
(benchmarks/bench_epoch.py, 10 pairs x 90 days) 0.16-0.23 s per call, on the critical path of every
batch.

This replacement runs Freqtrade's ``start`` unchanged, except that right after
``HyperOptimizer.prepare_hyperopt`` (data loaded, indicators computed, data file written, the
exchange dropped) it runs one ``gc.collect()`` (every garbage cycle made so far is freed, so
nothing unreachable is frozen) and then ``gc.freeze()``: the surviving objects move to the
permanent generation, which later collections skip. Objects made during the run (epochs' results,
optuna trials) are collected as before. When ``start`` ends, however it ends, ``gc.unfreeze()``
puts them back under the collector (a frozen object that became garbage during the run is then
collected by the next collection).

Results cannot change: the collector frees only unreachable objects, and freezing changes only
when a cycle of long-lived objects that became unreachable during the run is freed (after the
run instead of at the next batch). The hook is an attribute on the ``HyperOptimizer`` instance,
removed before ``prepare_hyperopt`` runs, so no worker ever receives it.

Left to ``wrapped`` (no freezing): a process in which something else already froze objects
(``gc.get_freeze_count() > 0``: its freeze scheme is not ours to undo).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel


logger = logging.getLogger(__name__)

_TARGET = "freqtrade.optimize.hyperopt.hyperopt:Hyperopt.start"
_HOOK = "prepare_hyperopt"
_MISSING = object()


class FreezeState:
    """What the replacement did in this process (tests and ``status`` read it)."""

    def __init__(self) -> None:
        self.frozen_objects = 0
        self.runs = 0
        self.skipped = 0


STATE = FreezeState()


def factory(wrapped: Callable[..., Any]) -> Callable[..., Any]:
    """``Hyperopt.start`` in front of `wrapped`, freezing after ``prepare_hyperopt``."""

    def start(self: Any) -> None:
        if gc.get_freeze_count() > 0:
            STATE.skipped += 1
            return wrapped(self)
        hyperopter = self.hyperopter
        prepare = hyperopter.prepare_hyperopt
        own = vars(hyperopter).get(_HOOK, _MISSING)  # an instance attribute set by someone else
        frozen = False

        def remove_hook() -> None:
            if vars(hyperopter).get(_HOOK) is prepare_hyperopt:
                if own is _MISSING:
                    del vars(hyperopter)[_HOOK]
                else:
                    vars(hyperopter)[_HOOK] = own

        def prepare_hyperopt() -> None:
            nonlocal frozen
            remove_hook()  # before anything runs: workers must not receive the hook
            prepare()
            gc.collect()
            gc.freeze()
            frozen = True
            STATE.frozen_objects = gc.get_freeze_count()
            logger.debug("freqtrade-opt: %d long-lived objects frozen for the hyperopt run",
                         STATE.frozen_objects)

        setattr(hyperopter, _HOOK, prepare_hyperopt)
        STATE.runs += 1
        try:
            return wrapped(self)
        finally:
            remove_hook()
            if frozen:
                gc.unfreeze()

    return start


def describe() -> dict[str, Any]:
    """Runs with frozen objects in this process, and how many the last one froze."""
    return {"runs": STATE.runs, "skipped": STATE.skipped,
            "last_frozen_objects": STATE.frozen_objects}


OPTIMIZATION = Optimization(
    name="hyperopt_gc_freeze",
    target=_TARGET,
    factory=factory,
    tier=OptimizationLevel.STANDARD,
    # Hyperopt.start of 2026.9: one prepare_hyperopt() through self.hyperopter before the batches,
    # gc.collect() after each batch.
    fingerprints={"2026.9": "e8d950d6d88c2efe"},
    description=(
        "Freezes the main process's long-lived objects (gc.freeze after the data is prepared) so "
        "Freqtrade's gc.collect() after each batch of epochs does not traverse them again"
    ),
    default_percentage=100,
    performance_threshold=1.0,
    mutates_arguments=True,
    # Runs the whole hyperopt: it cannot run twice on copies.
    shadow=False,
)
