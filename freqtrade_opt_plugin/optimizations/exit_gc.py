"""Exit: no full garbage collections while the interpreter shuts a Freqtrade command down.

When a ``freqtrade backtesting`` process ends, CPython's finalization clears every module and
runs full collections over everything still alive (pandas, ccxt, SQLAlchemy, the strategy, the
data): about 0.6 s of the 10 x 90 backtest process, after the results were written. `exit_gc`
freezes the collector (``gc.freeze()``: every object alive moves to the permanent generation,
which collections skip) in an ``atexit`` handler that runs after every handler registered later
(atexit runs last-in first-out, and this one is registered before Freqtrade's first import):
logging's shutdown, the plugin's monitor and caches, Freqtrade's own.

What still happens: every handler runs; objects are still freed by reference counting as the
modules are cleared, so open files are flushed and closed as before. What no longer happens:
the collection of reference cycles still in memory at exit, so a ``__del__`` method of an object
in such a cycle does not run (Python does not promise it does; ``weakref.finalize`` callbacks
run either way, from atexit). Results and files written by Freqtrade cannot change.

Only in a Freqtrade command line running one of the commands the plugin accelerates
(`SUBCOMMANDS`), and only if, at exit, the plugin is active in the process and this
optimization is on for it (level, flag, rollout, auto-disable: the config file included) with
Freqtrade's ``main`` verified. The registered target is ``freqtrade.main.main``, run unchanged:
registering it gives the switch, the version guard and the line in ``status``.
"""

from __future__ import annotations

import atexit
import gc
import sys

from freqtrade_opt_plugin.optimizations.command_line import subcommand
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel, unchanged


NAME = "exit_gc"
#: The Freqtrade commands whose processes it applies to: the ones the plugin accelerates.
SUBCOMMANDS = frozenset({
    "backtesting", "backtesting-analysis", "backtesting-show", "hyperopt", "hyperopt-list",
    "hyperopt-show", "lookahead-analysis", "recursive-analysis", "plot-dataframe", "plot-profit",
})

decision = "not decided (decided at the exit of a Freqtrade command line)"
_registered = False


def install(orig_argv: list[str] | None = None) -> bool:
    """Register the exit handler if this process runs one of `SUBCOMMANDS` (called by the
    start-up hook before the first Freqtrade import). Returns whether it was registered."""
    global _registered, decision
    command = subcommand(list(sys.orig_argv if orig_argv is None else orig_argv))
    if command not in SUBCOMMANDS:
        decision = f"collector left alone at exit: not a {'/'.join(sorted(SUBCOMMANDS))} command"
        return False
    if not _registered:
        atexit.register(freeze_at_exit)
        _registered = True
    return True


def _refusal() -> str | None:
    """None if the plugin is active here with this optimization installed and on, else why not."""
    activation = sys.modules.get("freqtrade_opt_plugin.activation")
    state = activation.current() if activation is not None else None
    if state is None:
        return "the plugin is not active in this process"
    target = state.targets.get(NAME)
    if target is None or not target.installed:
        return target.detail if target is not None else "not registered"
    if not state.flags.use_optimized(NAME):
        flag = state.flags.decisions.get(NAME)
        return flag.reason if flag is not None else "no flag decision"
    return None


def freeze_at_exit() -> None:
    """The exit handler: freeze the collector unless `_refusal` says why not."""
    global decision
    try:
        why_not = _refusal()
    except Exception as exc:  # never turn a clean exit into a traceback
        why_not = f"{type(exc).__name__}: {exc}"
    if why_not is not None:
        decision = f"collector left alone at exit: {why_not}"
        return
    gc.freeze()
    decision = "collector frozen at exit: no full collections during finalization"


def describe() -> dict[str, str]:
    """For ``freqtrade-opt status``: what this process decided (or will decide at exit)."""
    return {"exit": decision}


OPTIMIZATION = Optimization(
    name=NAME,
    target="freqtrade.main:main",
    factory=unchanged,
    tier=OptimizationLevel.STANDARD,
    fingerprints={"2026.9": "e2ba9d8d9fe69e70"},
    description=(
        "Freezes the garbage collector when a backtesting or hyperopt command exits: "
        "finalization no longer runs full collections over every object left in memory"
    ),
    default_percentage=100,
    performance_threshold=2.0,  # one call per process, timing noise only
    mutates_arguments=False,
    shadow=False,
)
