"""The Router: installed in place of an original function, it picks a path per call.

One Router per target holds every registered candidate, outermost (highest priority) first. Each
candidate is a layer in front of the one below it (the last one in front of the original). Per
call a layer asks its flags: if they do not choose it, the call goes straight to the layer below
(timed and recorded as this candidate's "original" path); else its replacement runs, built once by
`Optimization.factory(wrapped)` where `wrapped` continues the walk below it. With one candidate
this is exactly one closure in front of the original.

When a replacement raises, the arguments are restored from a snapshot and the layer below runs:
its result is returned and the error counted; if the layer below raises as well, its exception
propagates and nothing is counted (the optimization behaved like what it replaces). Exceptions an
optimization declares in `propagates` (e.g. an abort request) pass through at once, and so do
exceptions raised by `wrapped` inside a replacement (the lower layer's own behaviour).
At level experimental a share of calls runs in shadow mode: the layer below on the real arguments
(its result is returned), the replacement on copies; any difference disables the optimization.
A candidate with ``hot=True`` gets a lean layer instead (`hot_router`: precomputed decision,
sampled timing, no shadow or memory sampling; same fallback).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Iterable
from time import perf_counter, thread_time
from typing import Any

from freqtrade_opt_plugin.equality import first_difference
from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.monitor import Monitor, start_memory_trace, stop_memory_trace
from freqtrade_opt_plugin.pristine import Snapshot
from freqtrade_opt_plugin.registry import Optimization, ordered


logger = logging.getLogger(__name__)

#: Set on a Router: the tuple of its candidates, outermost first.
ROUTER_ATTRIBUTE = "__freqtrade_opt__"
#: Set on an exception raised by the layer below a replacement (through its `wrapped`), or by an
#: original called through `call_original`: the Router re-raises it unchanged.
ORIGINAL_ERROR_ATTRIBUTE = "__freqtrade_opt_original_error__"


def _mark(exc: BaseException, marker: object) -> None:
    try:
        setattr(exc, ORIGINAL_ERROR_ATTRIBUTE, marker)
    except AttributeError:  # e.g. an exception type with __slots__
        pass


def build_layer(
    opt: Optimization, original: Callable, below: Callable[..., Any]
) -> tuple[Callable[..., Any], Callable[[BaseException], bool]]:
    """`opt`'s replacement built in front of `below`, and a test telling whether an exception
    was raised by `below` (through the `wrapped` handed to the factory, or `call_original`):
    that is the lower layer's own behaviour, never a failure of this layer."""
    marker = object()

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return below(*args, **kwargs)
        except Exception as exc:
            _mark(exc, marker)
            raise

    def from_below(exc: BaseException) -> bool:
        mark = getattr(exc, ORIGINAL_ERROR_ATTRIBUTE, None)
        return mark is marker or mark is True

    return opt.build(wrapped), from_below


def call_original(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `original` from inside a plain `replacement` that found it itself (deprecated: use
    `Optimization.factory`, whose `wrapped` does this marking already).

    An exception it raises is the original's own behaviour, not a failure of the optimization:
    it is marked, and the Router re-raises it unchanged instead of counting an error and running
    the original a second time.
    """
    try:
        return original(*args, **kwargs)
    except Exception as exc:
        _mark(exc, True)
        raise


def make_router(
    candidates: Optimization | Iterable[Optimization],
    original: Callable,
    flags: Flags,
    monitor: Monitor,
    on_build_error: Callable[[Optimization, Exception], None] | None = None,
) -> Callable[..., Any]:
    """A function with `original`'s name, signature and docstring that routes each call among
    `candidates` (one `Optimization` or several on the same target).

    A candidate whose factory raises is left out when `on_build_error` is given (it is told);
    without it the exception propagates. Raises ValueError when no candidate is left.
    """
    from freqtrade_opt_plugin.hot_router import make_hot_layer  # it imports this module

    chain = ordered([candidates] if isinstance(candidates, Optimization) else candidates)
    below: Callable[..., Any] = original
    built: list[Optimization] = []
    for opt in reversed(chain):
        make_layer = make_hot_layer if opt.hot else _make_layer
        try:
            below = make_layer(opt, below, original, flags, monitor)
        except Exception as exc:
            if on_build_error is None:
                raise
            on_build_error(opt, exc)
            continue
        built.insert(0, opt)
    if not built:
        raise ValueError("a Router needs at least one candidate")
    setattr(below, ROUTER_ATTRIBUTE, tuple(built))
    return below


def _make_layer(
    opt: Optimization, below: Callable, original: Callable, flags: Flags, monitor: Monitor
) -> Callable[..., Any]:
    """One candidate in front of `below` (the next candidate's layer, or the original)."""
    name = opt.name
    propagates = opt.propagates
    use_optimized = flags.use_optimized
    use_shadow = flags.use_shadow
    record = monitor.record
    sample_memory = monitor.should_sample_memory
    cpu_start = monitor.cpu_start  # thread_time() on the calls whose CPU time is measured
    take_snapshot = Snapshot if opt.mutates_arguments else None
    replacement, from_below = build_layer(opt, original, below)

    def run_original(args: tuple, kwargs: dict) -> Any:
        traced = sample_memory(name)
        if traced:
            start_memory_trace()
        cpu = cpu_start(name, "original")
        start = perf_counter()
        try:
            result = below(*args, **kwargs)
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
            if from_below(exc):
                raise  # raised by the layer below (`wrapped`, `call_original`): its behaviour
            if saved is not None:
                saved.restore()
            # If the layer below raises too, the optimization behaved like it: its error
            # propagates.
            result = run_original(args, kwargs)
            record(name, "optimized", failed_after, error=True, fallback=True)
            flags.record_error(name, exc)
            return result
        elapsed = perf_counter() - start
        cpu = None if cpu is None else thread_time() - cpu
        record(name, "optimized", elapsed, cpu_seconds=cpu,
               peak_bytes=stop_memory_trace() if traced else None)
        return result

    return routed


def candidates_of(router: Any) -> tuple[Optimization, ...]:
    """The candidates a Router holds, outermost first (empty for anything else)."""
    return getattr(router, ROUTER_ATTRIBUTE, ())


def is_router(obj: Any) -> bool:
    return hasattr(obj, ROUTER_ATTRIBUTE)
