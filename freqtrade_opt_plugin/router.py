"""The Router: installed in place of an original function, it picks a path per call.

Per call: ask the flags; run the optimized replacement or the original; time it; record it.
When the optimized path raises, the arguments are restored from a snapshot and the original runs:
its result is returned and the error counted; if the original raises as well, its exception
propagates and nothing is counted (the optimization behaved like the original). Exceptions an
optimization declares in `propagates` (e.g. an abort request) pass through at once, and so do
exceptions of the original called by a replacement through `call_original`.
At level experimental a share of calls runs in shadow mode: the original on the real arguments
(its result is returned), the optimized path on copies; any difference disables the optimization.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable
from time import perf_counter, thread_time
from typing import Any

from freqtrade_opt_plugin.equality import first_difference
from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.monitor import Monitor, start_memory_trace, stop_memory_trace
from freqtrade_opt_plugin.pristine import Snapshot
from freqtrade_opt_plugin.registry import Optimization


logger = logging.getLogger(__name__)

ROUTER_ATTRIBUTE = "__freqtrade_opt__"
#: Set on an exception raised by the original when a replacement called it (`call_original`).
ORIGINAL_ERROR_ATTRIBUTE = "__freqtrade_opt_original_error__"


def call_original(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `original` from inside a replacement (e.g. a cache on a miss).

    An exception it raises is the original's own behaviour, not a failure of the optimization:
    it is marked, and the Router re-raises it unchanged instead of counting an error and running
    the original a second time.
    """
    try:
        return original(*args, **kwargs)
    except Exception as exc:
        try:
            setattr(exc, ORIGINAL_ERROR_ATTRIBUTE, True)
        except AttributeError:  # e.g. an exception type with __slots__
            pass
        raise


def make_router(
    opt: Optimization, original: Callable, flags: Flags, monitor: Monitor
) -> Callable[..., Any]:
    """A function with `original`'s name, signature and docstring that routes each call."""
    name = opt.name
    replacement = opt.replacement
    propagates = opt.propagates
    use_optimized = flags.use_optimized
    use_shadow = flags.use_shadow
    record = monitor.record
    sample_memory = monitor.should_sample_memory
    cpu_start = monitor.cpu_start  # thread_time() on the calls whose CPU time is measured
    take_snapshot = Snapshot if opt.mutates_arguments else None

    def run_original(args: tuple, kwargs: dict) -> Any:
        traced = sample_memory(name)
        if traced:
            start_memory_trace()
        cpu = cpu_start(name, "original")
        start = perf_counter()
        try:
            result = original(*args, **kwargs)
        finally:
            elapsed = perf_counter() - start
            cpu = None if cpu is None else thread_time() - cpu
            peak = stop_memory_trace() if traced else None
        record(name, "original", elapsed, cpu_seconds=cpu, peak_bytes=peak)
        return result

    def run_shadow(args: tuple, kwargs: dict) -> Any:
        """Run both paths (the optimized one on copies) and compare; return the original's."""
        try:
            copies = copy.deepcopy((args, kwargs))
        except Exception:
            return run_original(args, kwargs)
        result = run_original(args, kwargs)
        cpu = cpu_start(name, "optimized")
        start = perf_counter()
        try:
            got = replacement(*copies[0], **copies[1])
        except Exception as exc:
            record(name, "optimized", perf_counter() - start, error=True)
            difference = f"the optimized path raised {type(exc).__name__}: {exc}"
        else:
            elapsed = perf_counter() - start
            record(name, "optimized", elapsed,
                   cpu_seconds=None if cpu is None else thread_time() - cpu)
            difference = first_difference(got, result) or first_difference(
                copies, (args, kwargs), "arguments after the call")
        if difference is not None:
            logger.error("freqtrade-opt: shadow check of '%s' found a difference: %s",
                         name, difference)
            flags.disable(name, f"shadow mismatch: {difference}")
        return result

    @functools.wraps(original)
    def routed(*args: Any, **kwargs: Any) -> Any:
        if not use_optimized(name):
            return run_original(args, kwargs)
        if use_shadow(name):
            return run_shadow(args, kwargs)
        saved = take_snapshot(args, kwargs) if take_snapshot else None
        traced = sample_memory(name)
        if traced:
            start_memory_trace()
        cpu = cpu_start(name, "optimized")
        start = perf_counter()
        try:
            result = replacement(*args, **kwargs)
        except propagates:
            if traced:
                stop_memory_trace()
            raise
        except Exception as exc:
            failed_after = perf_counter() - start
            if traced:
                stop_memory_trace()
            if getattr(exc, ORIGINAL_ERROR_ATTRIBUTE, False):
                raise  # the original itself raised (see `call_original`)
            if saved is not None:
                saved.restore()
            # If the original raises too, the optimization behaved like it: its error propagates.
            result = run_original(args, kwargs)
            record(name, "optimized", failed_after, error=True, fallback=True)
            flags.record_error(name, exc)
            return result
        elapsed = perf_counter() - start
        cpu = None if cpu is None else thread_time() - cpu
        record(name, "optimized", elapsed, cpu_seconds=cpu,
               peak_bytes=stop_memory_trace() if traced else None)
        return result

    setattr(routed, ROUTER_ATTRIBUTE, opt)
    return routed


def is_router(obj: Any) -> bool:
    return hasattr(obj, ROUTER_ATTRIBUTE)
