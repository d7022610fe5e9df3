"""Lean routing for hot tiny functions (``Optimization(hot=True)``).

A standard Router layer (`router`) asks the flags on every call, times it, records it in the
monitor and may sample its memory: ~1.7 us per call, more than some replacements save (the
`trade_math` methods take 1-10 us and run ~145k times per backtest). A hot layer does the least
that keeps the Router's guarantees:

* the standing decision is precomputed whenever the flags change (`Flags.subscribe`): a call
  reads two closure cells (always / never); only a partial rollout (1-99%) asks the flags;
* one call in `SAMPLE_EVERY` per path ("optimized", "original") is timed (wall and thread CPU
  time) and recorded, with
  ``calls=SAMPLE_EVERY`` (the untimed calls since the previous record and itself). The untimed
  calls counted since the last record are recorded when the monitor is read or flushed
  (`Monitor.add_drain`, estimated at the last timed duration, ``timed=False``). So `calls` is
  exact, `timed_calls` / `timed_seconds` / medians are real samples (1 in `SAMPLE_EVERY`), and
  `total_seconds` is an extrapolation from them;
* no shadow runs and no memory sampling;
* a replacement that raises still falls back exactly as in `router` (arguments restored from the
  snapshot unless the optimization is pure, the layer below runs, the error is recorded and
  counted towards the auto-disable threshold); `propagates` and errors raised by `wrapped` pass
  through unchanged.

When every candidate on a target is hot and none is on in this process, activation binds the
original itself in the Router's place (and binds the Router again when the flags change):
the off state then costs nothing. Counters in the closures are not locked: under several threads
calling the same hot target a count may rarely be lost (Freqtrade's backtest loop is one thread;
hyperopt workers are processes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from time import perf_counter, thread_time
from typing import Any

from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.monitor import Monitor
from freqtrade_opt_plugin.pristine import Snapshot
from freqtrade_opt_plugin.registry import Optimization
from freqtrade_opt_plugin.router import build_layer


#: One call in this many per path is timed and recorded.
SAMPLE_EVERY = 64


def make_hot_layer(
    opt: Optimization, below: Callable, original: Callable, flags: Flags, monitor: Monitor
) -> Callable[..., Any]:
    """One hot candidate in front of `below` (see the module doc)."""
    name = opt.name
    every = SAMPLE_EVERY
    record = monitor.record
    use_optimized = flags.use_optimized
    propagates = opt.propagates
    take_snapshot = Snapshot if opt.mutates_arguments else None
    replacement, from_below = build_layer(opt, original, below)

    always = never = False  # the standing decision: 100% / 0% (else ask the flags per call)
    opt_left = orig_left = every  # calls until the next timed one, per path
    opt_last = orig_last = 0.0  # the last timed duration per path (estimate for drained calls)

    def refresh() -> None:
        nonlocal always, never
        decision = flags.decisions.get(name)
        percentage = decision.percentage if decision is not None else 0
        always, never = percentage >= 100, percentage <= 0

    def drain(discard: bool) -> None:
        """Record (or forget) the untimed calls counted since the last record."""
        nonlocal opt_left, orig_left
        pending_opt, pending_orig = every - opt_left, every - orig_left
        opt_left = orig_left = every
        if discard:
            return
        if pending_opt:
            record(name, "optimized", opt_last, calls=pending_opt, timed=False)
        if pending_orig:
            record(name, "original", orig_last, calls=pending_orig, timed=False)

    def uncount(timed: bool) -> None:
        """Take a call that raised out of the sampled group (as the standard layer, it is
        recorded only as an error, or not at all when its exception passes through)."""
        nonlocal opt_left
        if not timed:
            opt_left += 1
        elif every > 1:  # the group's other calls, the sample itself is lost
            record(name, "optimized", opt_last, calls=every - 1, timed=False)

    @functools.wraps(original)
    def routed(*args: Any, **kwargs: Any) -> Any:
        nonlocal opt_left, orig_left, opt_last, orig_last
        if not always and (never or not use_optimized(name)):
            orig_left -= 1
            if orig_left:
                return below(*args, **kwargs)
            orig_left = every
            cpu, start = thread_time(), perf_counter()
            result = below(*args, **kwargs)
            orig_last = perf_counter() - start
            record(name, "original", orig_last, cpu_seconds=thread_time() - cpu, calls=every)
            return result
        saved = take_snapshot(args, kwargs) if take_snapshot else None
        opt_left -= 1
        timed = not opt_left
        start = cpu = 0.0
        if timed:
            opt_left = every
            cpu, start = thread_time(), perf_counter()
        try:
            result = replacement(*args, **kwargs)
        except propagates:
            uncount(timed)
            raise
        except Exception as exc:
            failed_after = perf_counter() - start if timed else 0.0  # untimed: no duration
            uncount(timed)
            if from_below(exc):
                raise  # raised by the layer below (`wrapped`, `call_original`): its behaviour
            if saved is not None:
                saved.restore()
            result = below(*args, **kwargs)  # if it raises too, its error propagates
            record(name, "optimized", failed_after, error=True, fallback=True)
            flags.record_error(name, exc)
            return result
        if timed:
            opt_last = perf_counter() - start
            record(name, "optimized", opt_last, cpu_seconds=thread_time() - cpu, calls=every)
        return result

    refresh()
    flags.subscribe(refresh)
    monitor.add_drain(drain)
    return routed
