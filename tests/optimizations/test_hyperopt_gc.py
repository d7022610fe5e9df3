"""``hyperopt_gc_freeze``: Freqtrade's ``Hyperopt.start`` with the long-lived objects frozen.

Real in-process hyperopt runs (2 pairs x 10 days, SampleStrategy, ``-j 1`` so the epochs run in
this process and a probe can look at the collector while they run), each compared with Freqtrade's
own ``start`` on the same seed: identical epochs (``.fthypt`` lines minus clock fields).
"""

from __future__ import annotations

import gc
import inspect
import json
import weakref
from pathlib import Path
from typing import Any

import pytest
from freqtrade.optimize.hyperopt.hyperopt import Hyperopt

from freqtrade_opt_plugin.offline.compare import compare_hyperopt
from freqtrade_opt_plugin.offline.workspace import Workspace, create_workspace, in_process_hyperopt
from freqtrade_opt_plugin.optimizations import hyperopt_gc
from freqtrade_opt_plugin.optimizations.hyperopt_gc import OPTIMIZATION
from freqtrade_opt_plugin.registry import fingerprint


ORIGINAL = inspect.unwrap(Hyperopt.start)
EPOCHS = 4


class Cycle:
    """Garbage that only a collection frees (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return create_workspace(tmp_path_factory.mktemp("gc-ws"), ("BTC/USDT", "ETH/USDT"), days=10,
                            seed=5)


def run(workspace: Workspace, start: Any, name: str, garbage: weakref.ref | None = None
        ) -> tuple[list[dict], list[dict]]:
    """Run `start` on a fresh Hyperopt; its epochs and what the probe saw at each epoch."""
    hyperopt = in_process_hyperopt(workspace, epochs=EPOCHS, jobs=1, random_state=3)
    hyperopt.results_file = Path(hyperopt.results_file).with_name(f"{name}.fthypt")
    seen: list[dict] = []
    evaluate = hyperopt.evaluate_result

    def probe(val: dict, current: int, is_random: bool) -> None:
        seen.append({
            "frozen": gc.get_freeze_count(),
            "hook_on_instance": "prepare_hyperopt" in vars(hyperopt.hyperopter),
            "garbage_alive": garbage is not None and garbage() is not None,
        })
        evaluate(val, current, is_random)

    hyperopt.evaluate_result = probe
    start(hyperopt)
    lines = hyperopt.results_file.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()], seen


@pytest.fixture(scope="module")
def stock(workspace):
    return run(workspace, ORIGINAL, "stock")


def test_fingerprint_matches_installed_freqtrade():
    import freqtrade

    assert OPTIMIZATION.fingerprints[freqtrade.__version__] == fingerprint(ORIGINAL)


def test_epochs_identical_and_objects_frozen_only_during_the_run(workspace, stock):
    assert gc.get_freeze_count() == 0
    epochs, seen = run(workspace, OPTIMIZATION.factory(ORIGINAL), "frozen")
    verdict = compare_hyperopt(stock[0], epochs)
    assert verdict.identical, verdict
    assert len(epochs) == EPOCHS
    assert all(s["frozen"] == 0 for s in stock[1])
    # While the epochs ran, the long-lived objects were frozen, and the hook was gone.
    assert len(seen) == EPOCHS
    assert all(s["frozen"] > 10_000 for s in seen), seen
    assert not any(s["hook_on_instance"] for s in seen)
    # (frozen objects freed by reference counting leave the permanent generation)
    assert 0.9 * hyperopt_gc.STATE.frozen_objects <= seen[0]["frozen"] <= (
        hyperopt_gc.STATE.frozen_objects)
    # After the run: nothing left frozen.
    assert gc.get_freeze_count() == 0


def test_garbage_is_collected_before_freezing(workspace):
    """With automatic collection off, only the replacement's collect can free garbage made
    before the run: it must be gone by the first epoch (not frozen with the live objects)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        garbage = Cycle()
        ref = weakref.ref(garbage)
        del garbage
        assert ref() is not None
        _, seen = run(workspace, OPTIMIZATION.factory(ORIGINAL), "garbage", garbage=ref)
    finally:
        if enabled:
            gc.enable()
    assert seen and not seen[0]["garbage_alive"]


def test_an_existing_freeze_is_left_alone(workspace, stock):
    gc.collect()
    gc.freeze()
    before = gc.get_freeze_count()
    skipped = hyperopt_gc.STATE.skipped
    try:
        epochs, seen = run(workspace, OPTIMIZATION.factory(ORIGINAL), "preset")
        # Neither unfrozen nor frozen further (frozen objects freed by reference counting leave
        # the permanent generation, so the count may only shrink a little).
        assert 0.9 * before <= gc.get_freeze_count() <= before
        assert all(0.9 * before <= s["frozen"] <= before for s in seen)
    finally:
        gc.unfreeze()
    assert hyperopt_gc.STATE.skipped == skipped + 1
    verdict = compare_hyperopt(stock[0], epochs)
    assert verdict.identical, verdict


def test_failing_prepare_unfreezes_nothing_and_removes_the_hook(workspace):
    hyperopt = in_process_hyperopt(workspace, epochs=1, jobs=1)

    def broken() -> None:
        raise RuntimeError("no data")

    hyperopt.hyperopter.prepare_hyperopt = broken  # Freqtrade's own failure, from below
    with pytest.raises(RuntimeError, match="no data"):
        OPTIMIZATION.factory(ORIGINAL)(hyperopt)
    assert gc.get_freeze_count() == 0
    assert vars(hyperopt.hyperopter)["prepare_hyperopt"] is broken  # theirs, restored
