"""Decorators caching a function's result by the full content of its arguments.

``@ohlcv_cached``, ``@analysis_cached``, ``@temporary_cached`` and ``@backtesting_cached`` (with or
without arguments: ``@analysis_cached(ttl=600)``) store results in the cache of that name. The key
is the SHA-256 of: the function's identity (module, qualified name and a fingerprint of its source
without comments and docstrings), the versions of the plugin, Freqtrade, pandas, numpy, pyarrow and
Python, and every argument after binding to the signature (defaults applied), hashed by content
(`hashing.content_hash`).

When the result cannot be proven identical after a round trip, or an argument has no canonical
content (an arbitrary object, e.g. ``self`` of a method: use ``ignore=("self",)`` if it does not
influence the result), the call simply runs uncached (logged once at debug level).

A hit returns a fresh copy (decoded from disk), so mutating it never affects the cache. The
function's code is the key, not the code it calls: change a helper and the entries of its callers
stay valid until their TTL ends (clear the cache: ``freqtrade-opt cache clear NAME``).

``mutates="frame"`` supports functions that add columns to a DataFrame argument in place (like
Freqtrade's ``get_tick_size_over_time``): the added columns are stored with the result and put
back on a hit, after checking on the miss that "pre-call frame + stored columns" rebuilds exactly
the post-call frame. Any other in-place change makes the call uncached.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import logging
import platform
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

import pandas as pd

from freqtrade_opt_plugin.cache.caches import MISSING, get_cache
from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash


logger = logging.getLogger(__name__)

__all__ = [
    "analysis_cached",
    "backtesting_cached",
    "cached",
    "function_identity",
    "make_key",
    "ohlcv_cached",
    "runtime_versions",
    "tick_size_cached",
    "temporary_cached",
]

KEY_SCHEMA = "freqtrade-opt-cache-key/1"
F = TypeVar("F", bound=Callable[..., Any])
_debug_once: set[tuple[str, str]] = set()


@functools.cache
def runtime_versions() -> tuple[tuple[str, str], ...]:
    """Versions that results may depend on: plugin, Freqtrade, pandas, numpy, pyarrow, Python."""
    found = []
    for dist in ("freqtrade-opt-plugin", "freqtrade", "pandas", "numpy", "pyarrow"):
        found.append((dist, _version(dist)))
    found.append(("python", platform.python_version()))
    return tuple(found)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        if dist == "freqtrade-opt-plugin":
            return getattr(importlib.import_module("freqtrade_opt_plugin"), "__version__", "?")
        module = {"freqtrade": "freqtrade"}.get(dist, dist)
        try:
            return str(getattr(importlib.import_module(module), "__version__", "?"))
        except ImportError:
            return "absent"


def make_key(*parts: Any, fallback: Callable[[Any], Any] | None = None) -> str:
    """A cache key: `content_hash` of the key schema, the runtime versions and `parts`."""
    return content_hash(KEY_SCHEMA, runtime_versions(), *parts, fallback=fallback)


def function_identity(func: Callable) -> str:
    """``module:qualname#fingerprint`` of a function (source AST, else its code object)."""
    func = inspect.unwrap(func)
    name = f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"
    try:
        from freqtrade_opt_plugin.registry import fingerprint_source

        digest = fingerprint_source(inspect.getsource(func))
    except (OSError, TypeError, SyntaxError, IndentationError):
        code = getattr(func, "__code__", None)
        if code is None:
            raise Unhashable(f"no source or code object for {name}") from None
        digest = _code_digest(code)
    return f"{name}#{digest}"


def _code_digest(code: Any) -> str:
    h = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        h.update(_code_digest(const).encode() if inspect.iscode(const) else repr(const).encode())
    h.update(repr(code.co_names).encode())
    return h.hexdigest()[:16]


def _debug(func_name: str, message: str) -> None:
    if (func_name, message) not in _debug_once:
        _debug_once.add((func_name, message))
        logger.debug("freqtrade-opt cache: %s runs uncached: %s", func_name, message)


def _added_columns(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame | None:
    """Columns `after` gained at its end, if that is its only change from `before`."""
    width = before.shape[1]
    if after.shape[1] < width or after.shape[0] != before.shape[0]:
        return None
    added = after.iloc[:, width:]
    rebuilt = before.copy(deep=False)
    _put_columns(rebuilt, added)
    try:
        if content_hash(rebuilt) != content_hash(after):
            return None
    except Unhashable:
        return None
    return added


def _put_columns(frame: pd.DataFrame, added: pd.DataFrame) -> None:
    for position, column in enumerate(added.columns):
        frame[column] = added.iloc[:, position]


def cached(
    cache_name: str,
    func: Callable | None = None,
    *,
    ttl: float | None = None,
    ignore: Iterable[str] = (),
    mutates: str | None = None,
    identity: str | None = None,
) -> Any:
    """Cache `func`'s results in cache `cache_name` (see the module docstring).

    `identity` replaces the function's own identity in the key: for an exact replacement of
    another function (it then shares that function's entries).
    """
    ignored = frozenset(ignore)

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        if mutates is not None and mutates not in signature.parameters:
            raise ValueError(f"{fn.__qualname__} has no parameter {mutates!r} (mutates=)")
        name = getattr(fn, "__qualname__", repr(fn))
        ident: list[str | None] = [identity]

        def key_for(args: tuple, kwargs: dict) -> tuple[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            if ident[0] is None:
                ident[0] = function_identity(fn)
            arguments = [(k, v) for k, v in bound.arguments.items() if k not in ignored]
            frame = bound.arguments.get(mutates) if mutates is not None else None
            if mutates is not None and not isinstance(frame, pd.DataFrame):
                raise Unhashable(f"argument {mutates!r} is not a DataFrame")
            return make_key("function", ident[0], arguments, mutates), frame

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cache = get_cache(cache_name)
            if not cache.enabled or cache.bypassed is not None:
                return fn(*args, **kwargs)
            try:
                key, frame = key_for(args, kwargs)
            except TypeError as exc:  # includes Unhashable and signature mismatches
                _debug(name, str(exc))
                return fn(*args, **kwargs)
            hit = cache.get(key)
            if hit is not MISSING:
                if mutates is None:
                    return hit
                if type(hit) is tuple and len(hit) == 2 and isinstance(hit[1], pd.DataFrame):
                    _put_columns(frame, hit[1])
                    return hit[0]
                cache.delete(key)  # not what this wrapper stores: recompute
            if mutates is None:
                result = fn(*args, **kwargs)
                cache.set(key, result, ttl)
                return result
            before = frame.copy(deep=False)  # a snapshot under pandas Copy-on-Write
            result = fn(*args, **kwargs)
            added = _added_columns(before, frame)
            if added is None:
                _debug(name, f"it changes {mutates!r} in place beyond adding columns")
            else:
                cache.set(key, (result, added), ttl)
            return result

        wrapper.cache_name = cache_name  # type: ignore[attr-defined]
        wrapper.cache_key = lambda *a, **k: key_for(a, k)[0]  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate if func is None else decorate(func)


def _specialized(cache_name: str):
    @overload
    def decorator(func: F, /) -> F: ...

    @overload
    def decorator(
        func: None = None, /, *, ttl: float | None = None, ignore: Iterable[str] = (),
        mutates: str | None = None, identity: str | None = None,
    ) -> Callable[[F], F]: ...

    def decorator(func=None, /, *, ttl=None, ignore=(), mutates=None, identity=None):
        return cached(cache_name, func, ttl=ttl, ignore=ignore, mutates=mutates,
                      identity=identity)

    decorator.__name__ = decorator.__qualname__ = f"{cache_name}_cached"
    decorator.__doc__ = (
        f"Cache the decorated function's results in the '{cache_name}' cache, keyed by the full "
        "content of its arguments. Options: ttl (seconds), ignore (argument names left out of "
        "the key), mutates (a DataFrame argument the function adds columns to), identity."
    )
    return decorator


ohlcv_cached = _specialized("ohlcv")
analysis_cached = _specialized("analysis")
temporary_cached = _specialized("temporary")
backtesting_cached = _specialized("backtesting")

TICK_SIZE_TARGET = "freqtrade.data.btanalysis.historic_precision:get_tick_size_over_time"


def tick_size_cached(func: F) -> F:
    """Cache ``get_tick_size_over_time`` (or an exact replacement of it) by candle content.

    Entries live in the 'ohlcv' cache under the identity of Freqtrade's original function
    (its source fingerprint included), so the original and an exact replacement share them. The
    columns the function adds to ``candles`` (``open_count`` ... ``max_count``) are restored on a
    hit, so the frame ends up exactly as after a real call.
    """
    module_name, _, qualname = TICK_SIZE_TARGET.partition(":")
    original = inspect.unwrap(getattr(importlib.import_module(module_name), qualname))
    parameter = next(iter(inspect.signature(func).parameters))
    return cached("ohlcv", func, mutates=parameter,
                  identity=f"{TICK_SIZE_TARGET}#{function_identity(original)}")
