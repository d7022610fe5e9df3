"""Start-up: Freqtrade's own garbage-collector thresholds from the first Freqtrade import on.

``freqtrade.main`` calls ``gc_set_threshold()`` (``gc.set_threshold(50_000, 500, 1000)``: "reduce
number of GC runs to improve performance") once the command line is parsed, after most of its
imports ran with the interpreter's defaults (700, 10, 10). With those, the collector runs a few
thousand times while Freqtrade, pandas, ccxt, SQLAlchemy and optuna are imported, traversing the
growing set of module objects again and again: about 0.3 s of a ``freqtrade backtesting``
process on a 2-core machine (`benchmarks/bench_startup.py`).

When this optimization is on in the environment (``FREQTRADE_OPT_STARTUP_GC`` /
``FREQTRADE_OPT_LEVEL``, as `lazy_imports` decides: the config file is read after the imports),
`install` (called by the start-up hook before the first Freqtrade module is imported) sets
Freqtrade's thresholds right away, in a Freqtrade command-line process only (the ``freqtrade``
script, ``python -m freqtrade`` or this plugin's offline runner: processes in which Freqtrade sets
them itself moments later), only on CPython, only while the thresholds are the interpreter's
defaults (thresholds tuned by the user are left alone) and only if Freqtrade's
``gc_set_threshold`` is the verified one (read from its source file, not imported). Collections
still happen, later: results cannot change.

The registered target is ``gc_set_threshold`` itself, run unchanged (it sets the same values
again); registering it gives the switch, the version guard and the line in ``status``.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
from pathlib import Path

from freqtrade_opt_plugin.optimizations.command_line import freqtrade_arguments
from freqtrade_opt_plugin.registry import (
    Optimization,
    OptimizationLevel,
    find_definition,
    fingerprint_source,
    unchanged,
)


NAME = "startup_gc"
TIER = OptimizationLevel.STANDARD
_TARGET = "freqtrade.system.gc_setup:gc_set_threshold"
_FINGERPRINTS = {"2026.9": "3710f8fcf0dbdfcc"}
FREQTRADE_THRESHOLDS = (50_000, 500, 1000)  # what gc_set_threshold sets (fingerprinted)
_DEFAULT_THRESHOLDS = (700, 10, 10)  # CPython's

decision = "not decided (no Freqtrade module imported yet)"


def _source_verified() -> str | None:
    """None if Freqtrade's ``gc_set_threshold`` (found on ``sys.path``, not imported) is the
    verified one, else why not."""
    for entry in sys.path:
        path = Path(entry or ".") / "freqtrade" / "system" / "gc_setup.py"
        if path.is_file():
            try:
                source = find_definition(path.read_text(encoding="utf-8"), "gc_set_threshold")
            except (OSError, SyntaxError, UnicodeDecodeError) as exc:
                return f"{path} unreadable ({exc})"
            if source is not None and fingerprint_source(source) in _FINGERPRINTS.values():
                return None
            return f"{path}: gc_set_threshold is not the verified one"
    return "freqtrade/system/gc_setup.py not found"


def install(environ: os._Environ | dict | None = None,
            orig_argv: list[str] | None = None) -> bool:
    """Set Freqtrade's thresholds now if the optimization is on and the process qualifies (see
    the module doc). Returns whether they were set; the reason is kept in `decision`."""
    global decision
    from freqtrade_opt_plugin.lazy_imports import enabled_by_environment

    on, why = enabled_by_environment(environ, NAME, TIER)
    argv = list(sys.orig_argv if orig_argv is None else orig_argv)
    if on and platform.python_implementation() != "CPython":
        on, why = False, f"{platform.python_implementation()} (Freqtrade tunes CPython only)"
    if on and freqtrade_arguments(argv) is None:
        on, why = False, "not a freqtrade command line"
    if on and (current := gc.get_threshold()) != _DEFAULT_THRESHOLDS:
        on, why = False, f"thresholds already tuned to {current}"
    if on and (problem := _source_verified()) is not None:
        on, why = False, problem
    if not on:
        decision = f"interpreter thresholds kept: {why}"
        return False
    gc.set_threshold(*FREQTRADE_THRESHOLDS)
    decision = f"Freqtrade's thresholds {FREQTRADE_THRESHOLDS} set at start-up ({why})"
    return True


def describe() -> dict[str, str]:
    """For ``freqtrade-opt status``: what the start-up hook decided in this process."""
    return {"start-up": decision, "thresholds now": str(gc.get_threshold())}


OPTIMIZATION = Optimization(
    name=NAME,
    target=_TARGET,
    factory=unchanged,
    tier=TIER,
    fingerprints=_FINGERPRINTS,
    description=(
        "Sets Freqtrade's own garbage-collector thresholds at the first Freqtrade import instead "
        "of after the command line is parsed: fewer collections while the modules are imported"
    ),
    default_percentage=100,
    performance_threshold=2.0,  # one call per process, timing noise only
    mutates_arguments=False,
    shadow=False,
)
