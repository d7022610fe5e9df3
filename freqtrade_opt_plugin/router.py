"""The Router: installed in place of an original function, it picks a path per call.

Per call: ask the flags; run the optimized replacement or the original; time it; record it.
When the optimized path raises, the arguments are restored from a snapshot and the original's
result is returned (exceptions an optimization declares in `propagates` pass through unchanged,
as the original would raise them too).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from time import perf_counter
from typing import Any

from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.monitor import Monitor
from freqtrade_opt_plugin.pristine import Snapshot
from freqtrade_opt_plugin.registry import Optimization


ROUTER_ATTRIBUTE = "__freqtrade_opt__"


def make_router(
    opt: Optimization, original: Callable, flags: Flags, monitor: Monitor
) -> Callable[..., Any]:
    """A function with `original`'s name, signature and docstring that routes each call."""
    name = opt.name
    replacement = opt.replacement
    propagates = opt.propagates
    use_optimized = flags.use_optimized
    record = monitor.record
    take_snapshot = Snapshot if opt.mutates_arguments else None

    @functools.wraps(original)
    def routed(*args: Any, **kwargs: Any) -> Any:
        if not use_optimized(name):
            start = perf_counter()
            result = original(*args, **kwargs)
            record(name, "original", perf_counter() - start)
            return result
        saved = take_snapshot(args, kwargs) if take_snapshot else None
        start = perf_counter()
        try:
            result = replacement(*args, **kwargs)
        except propagates:
            raise
        except Exception as exc:
            record(name, "optimized", perf_counter() - start, error=True, fallback=True)
            if saved is not None:
                saved.restore()
            flags.record_error(name, exc)
            start = perf_counter()
            result = original(*args, **kwargs)
            record(name, "original", perf_counter() - start)
            return result
        record(name, "optimized", perf_counter() - start)
        return result

    setattr(routed, ROUTER_ATTRIBUTE, opt)
    return routed


def is_router(obj: Any) -> bool:
    return hasattr(obj, ROUTER_ATTRIBUTE)
