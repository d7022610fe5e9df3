"""Indicator reuse: skip ``populate_indicators`` when nothing it depends on has changed.

`cached_advise_all_indicators(strategy, data)` returns exactly what Freqtrade's
``IStrategy.advise_all_indicators(data)`` returns, pair by pair, from the 'analysis' cache when an
entry exists, else by calling the original for that pair and storing the result.

What a pair's entry is keyed on
-------------------------------
* **static** (per strategy class): the source text and the loaded code objects of every user
  module involved (the strategy's module, user base classes' modules and user modules they import,
  transitively), the versions of third-party packages those modules import, the class's qualified
  name, the fingerprints of the Freqtrade internals the pipeline goes through, and the plugin,
  Freqtrade, pandas, numpy, pyarrow and Python versions;
* **state**: the content of every strategy attribute the indicator code reads (``self.<name>``
  found by walking the AST of ``populate_indicators``, ``@informative`` methods and the methods
  and module functions they call, plus the attributes Freqtrade's own pipeline reads: e.g. a
  hyperoptable parameter with its value and search range, ``timeframe``), and of the plain-data
  globals of user modules. When ``self`` escapes that analysis (passed to a function, ``getattr``,
  ``vars(self)``, a property, a Freqtrade method called on it) the content of *all* instance
  attributes and user class data attributes is used instead. ``config`` and ``dp`` are recorded
  (below), ``wallets`` may not be used. So changing ``stoploss``, ROI or an entry-only parameter
  keeps the entries; changing a parameter the indicators read does not;
* **input**: the pair name and the full content of the pair's candles (`content_hash`);
* **what the run read**, recorded while the original ran: every config value it looked up (path by
  path, e.g. ``exchange.use_public_trades``; iterating a dict makes all of it a dependency) and
  every DataProvider call (informative pairs: ``get_pair_dataframe``/``historic_ohlcv``/... with
  their arguments and the full content of what they returned). A lookup first reads this
  *manifest* (stored under the static/state/input key), re-evaluates each recorded read against the
  current config and DataProvider, and only then looks up the frame under a key that includes
  those values. A run that reads the same values takes the same path (the code is deterministic,
  see below), so it computes the same frame.

When it does not cache (and says why at debug level)
----------------------------------------------------
* FreqAI enabled, ``exchange.use_public_trades`` (trades data), or an unverified Freqtrade
  internal (a changed ``advise_indicators`` etc.);
* the code reachable from ``populate_indicators`` / ``@informative`` methods (through ``self.x()``
  calls and module functions of user modules) calls something time-, randomness-, environment-,
  network- or file-dependent (``now``, ``random``, ``open``, ``read_csv``, ``requests``,
  ``os.environ``, ``self.freqai``...), or its source is unavailable;
* a state attribute whose content cannot be hashed (an arbitrary object), or a config value read
  that cannot be hashed;
* the run changed the strategy's state (an attribute, a class attribute, a plain-data module
  global), wrote to the config, used ``self.wallets`` or a DataProvider method that is not a pure
  read (``send_msg``, ``ticker``, ``orderbook``, private attributes...);
* the result would not come back identical from disk (`disk.encode` verifies every store).

Limits (what is trusted, not proven): third-party libraries (TA-Lib, technical, pandas-ta...) are
assumed to be deterministic functions of their inputs for a given version; state hidden inside
arbitrary objects (not plain data) of module globals or class attributes is not tracked; the
static scan catches the usual sources of nondeterminism, not every conceivable one (e.g. a call
through a function stored in a variable, ``getattr`` tricks, C extensions with side effects).
"""

from __future__ import annotations

import ast
import collections
import enum
import functools
import importlib
import inspect
import logging
import sys
import sysconfig
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from freqtrade_opt_plugin.cache.caches import MISSING, get_cache, get_settings
from freqtrade_opt_plugin.cache.decorators import _code_digest, make_key
from freqtrade_opt_plugin.cache.disk import estimate_memory
from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash


logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_NAME",
    "cached_advise_all_indicators",
    "indicator_cache_key",
    "original_advise_all_indicators",
    "strategy_cacheability",
    "strategy_identity",
    "strategy_sources",
]

CACHE_NAME = "analysis"
BUDGET_SHARE = 0.8  # at most this share of the cache for one advise_all_indicators call
TARGET = "freqtrade.strategy.interface:IStrategy.advise_all_indicators"

#: Freqtrade internals the cached pipeline relies on, with their verified fingerprints (2026.9).
INTERNALS: dict[str, str] = {
    "freqtrade.strategy.interface:IStrategy.advise_all_indicators": "f1df223d0294fb27",
    "freqtrade.strategy.interface:IStrategy.advise_indicators": "d345fd5a38138cdf",
    "freqtrade.strategy.interface:IStrategy._if_enabled_populate_trades": "58d94e177d7e5a02",
    "freqtrade.strategy.informative_decorator:_create_and_merge_informative_pair":
        "097dd47a29cff334",
    "freqtrade.strategy.informative_decorator:_get_populated_informative_dataframe":
        "0bece1fbaf2c01d9",
    "freqtrade.strategy.strategy_validation:StrategyResultValidator.assert_df":
        "81707801c784282e",
}

#: Instance attributes handled separately (recorded, proxied) or irrelevant to indicators.
EXCLUDED_ATTRIBUTES = frozenset({
    "config",  # recorded per key path
    "dp",  # recorded per call
    "wallets",  # any use: not cached
    "freqai",  # FreqAI enabled: not cached; else a dummy
    "_IStrategy__last_candle_seen_per_pair",  # live/dry-run only
    "_ft_informative_cache",  # live/dry-run only
    "__source__",  # part of the static key
})
_CLASS_SKIP = frozenset({
    "__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__source__", "__file__",
    "__abstractmethods__", "_abc_impl", "__annotations__", "__firstlineno__",
    "__static_attributes__", "__orig_bases__", "__parameters__", "__slots__",
    "__annotate_func__", "__annotations_cache__",
})

#: Names whose call makes the result depend on something other than the inputs.
_BANNED_PARTS = frozenset({
    "random", "secrets", "uuid", "requests", "urllib", "httpx", "aiohttp", "socket",
    "subprocess", "environ", "getenv", "freqai", "ccxt", "sqlite3",
})
_BANNED_CALLS = frozenset({
    "now", "utcnow", "today", "time", "time_ns", "perf_counter", "monotonic", "process_time",
    "dt_now", "open", "urlopen", "input", "load", "loadtxt", "genfromtxt", "fromfile",
    "read_text", "read_bytes", "write_text", "write_bytes", "getrandbits", "urandom", "exec",
    "eval", "__import__", "import_module", "to_csv", "to_pickle", "to_parquet", "to_feather",
    "to_json", "to_sql", "to_hdf", "to_excel", "savetxt", "save", "dump",
    "opt_counters", "opt_report",  # this plugin's telemetry (OptimizationMixin) differs per run
})

#: DataProvider members that are pure reads (replayed to validate an entry).
_DP_CALLS = frozenset({
    "get_pair_dataframe", "historic_ohlcv", "get_analyzed_dataframe", "market",
    "current_whitelist", "get_required_startup", "get_funding_rate_timeframe",
})
_DP_ATTRIBUTES = frozenset({"runmode"})
#: Also banned in trade-loop callbacks: DataProvider calls that query the exchange live.
_BANNED_TRADING_CALLS = frozenset({"ticker", "orderbook", "funding_rate"})

_lock = threading.Lock()
_class_plans: dict[tuple[type, bool], _ClassPlan] = {}
_internals_ok: list[bool] = []
_reported: set[tuple[str, str]] = set()


# -- results of the static analysis ------------------------------------------------------------
@dataclass(frozen=True)
class _ClassPlan:
    digest: str | None  # None: not cacheable
    reason: str = ""
    classes: tuple[type, ...] = field(default=(), repr=False)
    namespaces: tuple[dict, ...] = field(default=(), repr=False)
    sources: tuple[str, ...] = field(default=(), repr=False)  # the source texts in `digest`
    reads: frozenset[str] | None = None  # strategy attributes read; None: the whole state


def _debug_once(strategy_name: str, reason: str) -> None:
    if (strategy_name, reason) not in _reported:
        _reported.add((strategy_name, reason))
        logger.debug("freqtrade-opt indicator cache: %s: not cached: %s", strategy_name, reason)


def _resolve(target: str) -> Any:
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return inspect.unwrap(obj)


def _check_internals() -> bool:
    with _lock:
        if not _internals_ok:
            from freqtrade_opt_plugin.registry import fingerprint

            ok = True
            for target, expected in INTERNALS.items():
                try:
                    found = fingerprint(_resolve(target))
                except Exception as exc:  # noqa: BLE001
                    found = f"unavailable ({exc})"
                if found != expected:
                    logger.debug("freqtrade-opt indicator cache: %s is %s, verified %s; "
                                 "indicator reuse is off", target, found, expected)
                    ok = False
            _internals_ok.append(ok)
        return _internals_ok[0]


# -- what is user code -------------------------------------------------------------------------
def _library_roots() -> tuple[str, ...]:
    roots = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(str(Path(path).resolve()))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        roots.add(str((Path(prefix) / "lib").resolve()))
    return tuple(sorted(roots))


_LIBRARY_ROOTS = _library_roots()


def _is_user_module(module: types.ModuleType) -> bool:
    """Code whose source is part of the key (not a versioned library, not this plugin)."""
    name = module.__name__
    for library in ("freqtrade", "freqtrade_opt_plugin"):
        if name == library or name.startswith(library + "."):
            return False
    return _is_user_file(getattr(module, "__file__", None))


def _is_user_file(filename: str | None) -> bool:
    if not filename:
        return False
    try:
        path = str(Path(filename).resolve())
    except OSError:
        return False
    return not any(path == root or path.startswith(root + "/") for root in _LIBRARY_ROOTS)


def _namespace_of(cls: type) -> dict | None:
    """The globals of the module that defines `cls`.

    Freqtrade loads strategy files as modules it does not keep in ``sys.modules``; their globals
    are reached through the class's functions. A class without functions of its own (e.g.
    ``class MyStrategy(OptimizationMixin, SampleStrategy): pass``) cannot read its module's
    globals at all, so its namespace is just its source file (Freqtrade sets ``__file__``).
    """
    for value in vars(cls).values():
        func = _function_of(value)
        if func is not None and isinstance(getattr(func, "__globals__", None), dict):
            return func.__globals__
    module = sys.modules.get(cls.__module__)
    if module is not None:
        return vars(module)
    filename = vars(cls).get("__file__")  # no function of its own (else returned above)
    if isinstance(filename, str):
        return {"__name__": cls.__module__, "__file__": filename}
    return None


def _function_of(value: Any) -> types.FunctionType | None:
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    elif isinstance(value, property):
        value = value.fget
    value = inspect.unwrap(value) if callable(value) else value
    return value if isinstance(value, types.FunctionType) else None


def _namespace_source(namespace: dict, cls: type | None = None) -> str | None:
    if cls is not None and isinstance(vars(cls).get("__source__"), str) and vars(cls)["__source__"]:
        return vars(cls)["__source__"]  # the text Freqtrade loaded the strategy from
    module = sys.modules.get(namespace.get("__name__", ""))
    if module is not None and vars(module) is namespace:
        try:
            return inspect.getsource(module)
        except (OSError, TypeError):
            pass
    filename = namespace.get("__file__")
    if filename:
        try:
            return Path(filename).read_text(encoding="utf-8")
        except OSError:
            return None
    return None


@dataclass
class _Closure:
    namespaces: list[dict] = field(default_factory=list)
    sources: list[tuple[str, str]] = field(default_factory=list)
    libraries: set[str] = field(default_factory=set)


def _collect(classes: Iterable[type]) -> _Closure | str:
    """User namespaces (with sources) reachable from `classes`, or the reason it failed."""
    closure = _Closure()
    seen: set[int] = set()
    queue: list[tuple[dict, type | None]] = []
    for cls in classes:
        namespace = _namespace_of(cls)
        if namespace is None:
            return f"no module namespace for {cls.__qualname__}"
        queue.append((namespace, cls))
    while queue:
        namespace, cls = queue.pop(0)
        if id(namespace) in seen:
            continue
        seen.add(id(namespace))
        if len(seen) > 64:
            return "too many user modules involved"
        source = _namespace_source(namespace, cls)
        if source is None:
            return f"source of module {namespace.get('__name__')} unavailable"
        closure.namespaces.append(namespace)
        closure.sources.append((str(namespace.get("__name__")), source))
        for value in list(namespace.values()):
            module = value if isinstance(value, types.ModuleType) else sys.modules.get(
                getattr(value, "__module__", None) or ""
            )
            if module is None or not isinstance(module, types.ModuleType):
                continue
            if _is_user_module(module):
                queue.append((vars(module), None))
            elif getattr(module, "__file__", None):
                closure.libraries.add(module.__name__.partition(".")[0])
    return closure


def _library_versions(names: Iterable[str]) -> list[tuple[str, str]]:
    """Version of each top-level library module (``__version__``, dist metadata, file stamp)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in sorted(set(names)):
        module = sys.modules.get(name)
        stamp = getattr(module, "__version__", None)
        if not isinstance(stamp, str):
            try:
                stamp = version(name)
            except (PackageNotFoundError, ValueError):
                filename = getattr(module, "__file__", None)
                try:
                    info = Path(filename).stat() if filename else None
                except OSError:
                    info = None
                stamp = f"{filename}:{info.st_size}:{info.st_mtime_ns}" if info else "?"
        found.append((name, stamp))
    return found


def _code_digests(namespaces: Iterable[dict]) -> list[tuple[str, str]]:
    """Digests of the loaded code of every function/method defined in the user namespaces."""
    digests: list[tuple[str, str]] = []

    def add(prefix: str, value: Any, depth: int) -> None:
        func = _function_of(value)
        if func is not None:
            digests.append((prefix, _code_digest(func.__code__)))
            defaults = (func.__defaults__, func.__kwdefaults__)
            try:
                digests.append((prefix + ".defaults", content_hash(defaults, fallback=_fallback)))
            except Unhashable:
                digests.append((prefix + ".defaults", repr(defaults)))
        elif isinstance(value, type) and depth < 3:
            for name, member in vars(value).items():
                add(f"{prefix}.{name}", member, depth + 1)

    for namespace in namespaces:
        module_name = namespace.get("__name__")
        for name, value in namespace.items():
            if getattr(value, "__module__", None) == module_name:
                add(f"{module_name}.{name}", value, 0)
    return sorted(digests)


# -- static scan for nondeterminism ------------------------------------------------------------
def _dotted(node: ast.AST) -> list[str]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call):
        parts.extend(reversed(_dotted(node.func)))
    return list(reversed(parts))


@dataclass
class _ScanResult:
    marker: str | None = None  # a reason not to cache
    reads: set[str] | None = field(default_factory=set)  # self.<name> read; None: all of self


def _scan(sources: list[tuple[str, str]], roots: set[str], cls: type,
          banned_calls: frozenset[str] = _BANNED_CALLS) -> _ScanResult:
    """Walk the code reachable from the methods named `roots`.

    Finds the first nondeterminism marker, and the strategy attributes the code reads: every
    ``self.<name>`` (methods reached that way are walked too). When ``self`` escapes (passed to a
    function, ``vars(self)``, a dunder attribute, a framework method called on it, a property),
    the whole state counts as read (``reads=None``).
    """
    result = _ScanResult()
    methods: dict[str, list[ast.AST]] = collections.defaultdict(list)
    functions: dict[str, list[ast.AST]] = collections.defaultdict(list)
    for module_name, source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            result.marker = f"cannot parse module {module_name}"
            return result
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[node.name].append(node)
            elif isinstance(node, ast.ClassDef):
                for item in ast.walk(node):
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        methods[item.name].append(item)
    queue: list[tuple[ast.AST, str | None]] = [
        (node, _first_argument(node)) for name in roots for node in methods.get(name, [])
    ]
    seen: set[int] = set()
    while queue and result.marker is None:
        node, self_name = queue.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        escaped = _self_escapes(node, self_name)
        if escaped:
            result.reads = None
        for child in ast.walk(node):
            marker = _marker(child, banned_calls)
            if marker is not None:
                result.marker = marker
                break
            if (isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name)
                    and child.value.id == self_name):
                name = child.attr
                if result.reads is not None:
                    if name.startswith("__") or not _plain_attribute(cls, name, methods):
                        result.reads = None
                    else:
                        result.reads.add(name)
                queue.extend((m, _first_argument(m)) for m in methods.get(name, []))
            if isinstance(child, ast.Call):
                parts = _dotted(child.func)
                if len(parts) >= 2 and parts[0] == "super":
                    queue.extend((m, _first_argument(m)) for m in methods.get(parts[-1], []))
                elif len(parts) == 1:
                    queue.extend((f, None) for f in functions.get(parts[0], []))
    return result


def _first_argument(node: ast.AST) -> str | None:
    args = getattr(node, "args", None)
    if args is None:
        return None
    positional = [*args.posonlyargs, *args.args]
    return positional[0].arg if positional else None


def _self_escapes(node: ast.AST, self_name: str | None) -> bool:
    """Whether ``self`` is used other than as ``self.<attribute>`` in `node`."""
    if self_name is None:
        return False
    attribute_bases = {
        id(child.value) for child in ast.walk(node) if isinstance(child, ast.Attribute)
    }
    for child in ast.walk(node):
        if (isinstance(child, ast.Name) and child.id == self_name
                and id(child) not in attribute_bases):
            return True
    return False


def _marker(node: ast.AST, banned_calls: frozenset[str] = _BANNED_CALLS) -> str | None:
    if isinstance(node, ast.Attribute) and node.attr in _BANNED_PARTS:
        return f"uses '{'.'.join(_dotted(node))}'"
    if isinstance(node, ast.Name) and node.id in _BANNED_PARTS:
        return f"uses '{node.id}'"
    if isinstance(node, ast.Call):
        parts = _dotted(node.func)
        if parts and (parts[-1] in banned_calls or parts[-1].startswith("read_")):
            return f"calls '{'.'.join(parts)}()'"
    return None


#: Attributes of the strategy that Freqtrade's own indicator pipeline reads (2026.9).
FRAMEWORK_READS = frozenset({
    "timeframe", "config", "dp", "_ft_informative", "_ft_informative_cache",
    "disable_dataframe_checks", "_cached_grouped_trades_per_pair",
})
_FRAMEWORK_METHODS = frozenset({
    "advise_all_indicators", "advise_indicators", "populate_indicators",
    "_if_enabled_populate_trades",
})


def _plain_attribute(cls: type, name: str, user_methods: Mapping[str, Any]) -> bool:
    """Whether reading ``self.<name>`` reads data or user code (not a property or framework
    method whose own reads are unknown)."""
    try:
        static = inspect.getattr_static(cls, name)
    except AttributeError:
        return True  # an instance attribute (or absent)
    if isinstance(static, property) or (
        hasattr(type(static), "__get__") and not isinstance(static, (types.FunctionType,
                                                                     staticmethod, classmethod))
        and not _is_parameter(static)
    ):
        return False  # a descriptor computing its value
    if _function_of(static) is not None:
        module = getattr(_function_of(static), "__module__", "") or ""
        if module.startswith("freqtrade.") and name not in _FRAMEWORK_METHODS:
            return False  # a framework method: its reads are not scanned
        return name in user_methods or name in _FRAMEWORK_METHODS
    return True


def _is_parameter(value: Any) -> bool:
    from freqtrade.strategy.parameters import BaseParameter

    return isinstance(value, BaseParameter)


# -- per-class plan ----------------------------------------------------------------------------
def _user_classes(cls: type) -> tuple[type, ...]:
    found = []
    for klass in cls.__mro__:
        module = klass.__module__ or ""
        if klass is object or module in ("builtins", "abc", "typing"):
            continue
        if module.partition(".")[0] in ("freqtrade", "freqtrade_opt_plugin"):
            continue  # versioned code (e.g. the plugin's strategy mixin), not user code
        found.append(klass)
    return tuple(found)


def _roots(cls: type) -> set[str]:
    roots = {"populate_indicators", "advise_indicators", "advise_all_indicators"}
    for klass in cls.__mro__:
        for name, value in vars(klass).items():
            if isinstance(getattr(value, "_ft_informative", None), list):
                roots.add(name)
    return roots


def _all_methods(classes: Iterable[type]) -> set[str]:
    """Names of every function defined in `classes` (all the code the trade loop can call)."""
    return {name for cls in classes for name, value in vars(cls).items()
            if _function_of(value) is not None}


def _cacheable_plan(strategy: Any, whole: bool = False) -> _ClassPlan:
    """`_class_plan` of the strategy's class; raises `Unhashable` when it is not cacheable."""
    plan = _class_plan(type(strategy), whole)
    if plan.digest is None:
        raise Unhashable(plan.reason)
    return plan


def _class_plan(cls: type, whole: bool = False) -> _ClassPlan:
    """The static plan of `cls`: for its indicator code, or with `whole` for all of its code."""
    with _lock:
        plan = _class_plans.get((cls, whole))
    if plan is not None:
        return plan
    plan = _build_class_plan(cls, whole)
    with _lock:
        _class_plans[(cls, whole)] = plan
    return plan


def _build_class_plan(cls: type, whole: bool = False) -> _ClassPlan:
    classes = _user_classes(cls)
    if not classes:
        return _ClassPlan(None, "no user strategy class")
    closure = _collect(classes)
    if isinstance(closure, str):
        return _ClassPlan(None, closure)
    if whole:
        scan = _scan(closure.sources, _all_methods(classes), cls,
                     _BANNED_CALLS | _BANNED_TRADING_CALLS)
        if scan.marker is not None:
            return _ClassPlan(None, f"the strategy's code {scan.marker}")
        reads = None
    else:
        scan = _scan(closure.sources, _roots(cls), cls)
        if scan.marker is not None:
            return _ClassPlan(None, f"populate_indicators (or code it calls) {scan.marker}")
        reads = None if scan.reads is None else frozenset(scan.reads | FRAMEWORK_READS)
    digest = content_hash(
        "strategy-static/1" if whole else "indicator-static/1",
        f"{cls.__module__}:{cls.__qualname__}",
        closure.sources,
        _code_digests(closure.namespaces),
        _library_versions(closure.libraries),
        sorted(INTERNALS.items()),
    )
    return _ClassPlan(digest, "", classes, tuple(closure.namespaces),
                      tuple(source for _, source in closure.sources), reads)


# -- hashing strategy state --------------------------------------------------------------------
def _fallback(value: Any) -> Any:
    """Content of the non-plain types found in strategy state."""
    from freqtrade.strategy.parameters import BaseParameter

    if isinstance(value, BaseParameter):
        return dict(vars(value))
    if isinstance(value, (collections.OrderedDict, collections.defaultdict)):
        return dict(value)
    if isinstance(value, types.FunctionType):
        return f"{value.__module__}:{value.__qualname__}#{_code_digest(value.__code__)}"
    if isinstance(value, types.MethodType):
        return (_fallback(value.__func__), id(value.__self__))
    raise Unhashable(f"cannot hash a {type(value).__qualname__} by content")


_PLAIN = (type(None), bool, int, float, str, bytes, tuple, list, dict, set, frozenset,
          pd.DataFrame, pd.Series, enum.Enum, collections.OrderedDict, collections.defaultdict)


def _is_data(value: Any) -> bool:
    import numpy as np
    from freqtrade.strategy.parameters import BaseParameter

    return isinstance(value, (*_PLAIN, np.ndarray, np.generic, BaseParameter))


def _state_digest(strategy: Any, plan: _ClassPlan) -> str:
    """Hash of the strategy state indicators may read (raises `Unhashable`).

    With a known read set: the value of each ``self.<name>`` read (wherever it lives: instance,
    class or base class). Otherwise every instance attribute and every data attribute of the
    user classes. Plus the plain-data globals of user modules in both cases.
    """
    parts: list[Any] = []
    if plan.reads is not None:
        for name in sorted(plan.reads - EXCLUDED_ATTRIBUTES):
            try:
                static = inspect.getattr_static(strategy, name)
            except AttributeError:
                parts.append((name, _ABSENT))
                continue
            if _function_of(static) is not None:
                continue  # code: part of the static digest (user) or the version (framework)
            value = getattr(strategy, name)
            try:
                parts.append((name, content_hash(value, fallback=_fallback)))
            except Unhashable as exc:
                raise Unhashable(f"attribute self.{name}: {exc}") from None
    else:
        for name, value in vars(strategy).items():
            if name in EXCLUDED_ATTRIBUTES:
                continue
            try:
                parts.append((name, content_hash(value, fallback=_fallback)))
            except Unhashable as exc:
                raise Unhashable(f"attribute self.{name}: {exc}") from None
        for cls, name, value in _class_data(plan):
            try:
                parts.append((cls.__qualname__, name, content_hash(value, fallback=_fallback)))
            except Unhashable as exc:
                raise Unhashable(f"class attribute {cls.__qualname__}.{name}: {exc}") from None
    for module_name, name, value in _global_data(plan):
        try:
            parts.append((module_name, name, content_hash(value, fallback=_fallback)))
        except Unhashable as exc:
            raise Unhashable(f"module global {module_name}.{name}: {exc}") from None
    return content_hash(parts)


def _class_data(plan: _ClassPlan) -> Iterable[tuple[type, str, Any]]:
    for cls in plan.classes:
        for name, value in vars(cls).items():
            if name in _CLASS_SKIP or _function_of(value) is not None or isinstance(value, type):
                continue
            if isinstance(value, (staticmethod, classmethod, property, types.MemberDescriptorType,
                                  types.GetSetDescriptorType)):
                continue
            yield cls, name, value


def _global_data(plan: _ClassPlan) -> Iterable[tuple[str, str, Any]]:
    for namespace in plan.namespaces:
        module_name = str(namespace.get("__name__"))
        for name, value in list(namespace.items()):
            if not name.startswith("__") and _is_data(value):
                yield module_name, name, value


def _mutation_digest(strategy: Any) -> str:
    """Everything a run could change on the strategy: instance, user classes, user globals.

    Content where it can be hashed, object identity otherwise (for change detection within this
    process only, never for keys).
    """
    plan = _class_plan(type(strategy))
    instance = {k: v for k, v in vars(strategy).items() if k not in EXCLUDED_ATTRIBUTES}
    classes = [(cls.__qualname__, name, value) for cls, name, value in _class_data(plan)]
    return _identity_hash((instance, classes, list(_global_data(plan))))


# -- recording what a run reads ----------------------------------------------------------------
class _Reads:
    """Config paths and DataProvider calls observed during one pair's run."""

    def __init__(self) -> None:
        self.config: dict[tuple, str] = {}  # path -> "value" | "dict" | "present"
        self.dp_calls: list[tuple[str, list, dict, str]] = []
        self.dp_attributes: list[tuple[str, str]] = []
        self.problems: list[str] = []

    def read(self, path: tuple, mode: str) -> None:
        if not all(type(p) in (str, int) for p in path):
            self.problems.append(f"config key of unsupported type at {path!r}")
            return
        if self.config.get(path) != "value":  # "value" subsumes "dict" and "present"
            self.config[path] = mode


class _RecordingDict(dict):
    """A config (sub)dict that records what is read and writes through to the original."""

    def __init__(self, origin: dict, path: tuple, reads: _Reads) -> None:
        super().__init__(origin)
        self._origin = origin
        self._path = path
        self._reads = reads

    def _value(self, key: Any, value: Any) -> Any:
        path = self._path + (key,)
        if type(value) is dict:
            self._reads.read(path, "dict")
            return _RecordingDict(value, path, self._reads)
        self._reads.read(path, "value")
        return value

    def _all(self) -> None:
        self._reads.read(self._path, "value")

    def __getitem__(self, key: Any) -> Any:
        try:
            value = dict.__getitem__(self, key)
        except KeyError:
            self._reads.read(self._path + (key,), "value")
            raise
        return self._value(key, value)

    def get(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self._value(key, dict.__getitem__(self, key))
        self._reads.read(self._path + (key,), "value")
        return default

    def __contains__(self, key: Any) -> bool:
        self._reads.read(self._path + (key,), "present")
        return dict.__contains__(self, key)

    def _write(self, what: str) -> None:
        self._reads.problems.append(f"writes to the config ({what} at {self._path!r})")

    def __setitem__(self, key: Any, value: Any) -> None:
        self._write(f"set {key!r}")
        self._origin[key] = value
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self._write(f"delete {key!r}")
        del self._origin[key]
        dict.__delitem__(self, key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if not dict.__contains__(self, key):
            self._write(f"setdefault {key!r}")
            self._origin[key] = default
            dict.__setitem__(self, key, default)
        return self._value(key, dict.__getitem__(self, key))

    def pop(self, key: Any, *default: Any) -> Any:
        self._write(f"pop {key!r}")
        self._origin.pop(key, *default)
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple:
        self._write("popitem")
        item = dict.popitem(self)
        self._origin.pop(item[0], None)
        return item

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._write("update")
        self._origin.update(*args, **kwargs)
        dict.update(self, *args, **kwargs)

    def clear(self) -> None:
        self._write("clear")
        self._origin.clear()
        dict.clear(self)

    def __ior__(self, other: Any) -> _RecordingDict:
        self.update(other)
        return self

    def keys(self):  # noqa: D102 - dict API
        self._all()
        return dict.keys(self)

    def values(self):  # noqa: D102
        self._all()
        return dict.values(self)

    def items(self):  # noqa: D102
        self._all()
        return dict.items(self)

    def __iter__(self):
        self._all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._all()
        return dict.__len__(self)

    def __eq__(self, other: object) -> bool:
        self._all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._all()
        return dict.__ne__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> dict:
        self._all()
        return dict(dict.items(self))

    def __or__(self, other: Any) -> dict:
        self._all()
        return dict.__or__(dict(dict.items(self)), other)

    def __repr__(self) -> str:
        self._all()
        return dict.__repr__(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        self._all()
        return (dict, (dict(dict.items(self)),))


def _encode_argument(value: Any) -> Any:
    if isinstance(value, enum.Enum) and type(value).__module__.startswith("freqtrade.enums"):
        return {"$enum": f"{type(value).__module__}:{type(value).__qualname__}",
                "value": value.value}
    if value is None or type(value) in (bool, int, float, str):
        return value
    raise Unhashable(f"DataProvider argument of type {type(value).__qualname__}")


def _decode_argument(value: Any) -> Any:
    if isinstance(value, dict):
        module_name, _, qualname = str(value.get("$enum", "")).partition(":")
        if not module_name.startswith("freqtrade.enums"):
            raise ValueError(f"refusing to rebuild {value!r}")
        cls = getattr(importlib.import_module(module_name), qualname)
        return cls(value["value"])
    return value


class _DataProviderRecorder:
    """Stands in for ``strategy.dp`` during a run: records pure reads, flags everything else."""

    def __init__(self, dp: Any, reads: _Reads) -> None:
        object.__setattr__(self, "_dp", dp)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str) -> Any:
        dp, reads = self._dp, self._reads
        value = getattr(dp, name)
        if name in _DP_ATTRIBUTES:
            try:
                reads.dp_attributes.append((name, content_hash(value)))
            except Unhashable:
                reads.problems.append(f"reads dp.{name} (unhashable)")
            return value
        if name in _DP_CALLS and callable(value):
            def call(*args: Any, **kwargs: Any) -> Any:
                result = value(*args, **kwargs)
                try:
                    encoded = ([_encode_argument(a) for a in args],
                               {k: _encode_argument(v) for k, v in kwargs.items()})
                    reads.dp_calls.append((name, *encoded, content_hash(result)))
                except Unhashable as exc:
                    reads.problems.append(f"dp.{name}: {exc}")
                return result

            return call
        reads.problems.append(f"uses dp.{name}")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        self._reads.problems.append(f"sets dp.{name}")
        setattr(self._dp, name, value)

    def __bool__(self) -> bool:
        return bool(self._dp)


class _Tripwire:
    """Stands in for an object whose use makes the run uncacheable (e.g. ``self.wallets``)."""

    def __init__(self, target: Any, label: str, reads: _Reads) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str) -> Any:
        self._reads.problems.append(f"uses {self._label}.{name}")
        return getattr(self._target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._reads.problems.append(f"sets {self._label}.{name}")
        setattr(self._target, name, value)

    def __bool__(self) -> bool:
        return bool(self._target)


# -- manifests: the reads of a stored entry, and their current values ---------------------------
def _manifest(reads: _Reads) -> dict[str, Any]:
    return {
        "config": [[list(path), mode] for path, mode in sorted(
            reads.config.items(), key=lambda item: repr(item[0]))],
        "dp": [[name, args, kwargs] for name, args, kwargs, _ in reads.dp_calls],
        "dp_attributes": [name for name, _ in reads.dp_attributes],
    }


_ABSENT = "<absent>"


def _config_value(config: Mapping, path: Iterable[Any], mode: str) -> Any:
    node: Any = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return (_ABSENT, mode)
        node = node[key]
    if mode == "present":
        return ("present", mode)
    if mode == "dict":
        return ("dict" if type(node) is dict else type(node).__qualname__, mode)
    return content_hash(node, fallback=_fallback)


def _recorded_digest(reads: _Reads, config: Mapping) -> str:
    """Digest of the values a run read, as they were (config: as it is now, unchanged by it)."""
    config_part = [(list(path), mode, _config_value(config, path, mode))
                   for path, mode in sorted(reads.config.items(), key=lambda i: repr(i[0]))]
    dp_part = [(name, args, kwargs, digest) for name, args, kwargs, digest in reads.dp_calls]
    return content_hash(config_part, dp_part, reads.dp_attributes)


def _replayed_digest(manifest: Mapping[str, Any], config: Mapping, dp: Any) -> str:
    """Digest of the manifest's reads evaluated now (raises on anything unexpected)."""
    config_part = []
    for path, mode in sorted(manifest["config"], key=lambda i: repr(tuple(i[0]))):
        if mode not in ("value", "dict", "present"):
            raise ValueError(f"unknown read mode {mode!r}")
        config_part.append((list(path), mode, _config_value(config, path, mode)))
    dp_part = []
    for name, args, kwargs in manifest["dp"]:
        if name not in _DP_CALLS or dp is None:
            raise ValueError(f"cannot replay dp.{name}")
        result = getattr(dp, name)(*[_decode_argument(a) for a in args],
                                   **{k: _decode_argument(v) for k, v in kwargs.items()})
        dp_part.append((name, args, kwargs, content_hash(result)))
    attributes = []
    for name in manifest["dp_attributes"]:
        if name not in _DP_ATTRIBUTES or dp is None:
            raise ValueError(f"cannot replay dp.{name}")
        attributes.append((name, content_hash(getattr(dp, name))))
    return content_hash(config_part, dp_part, attributes)


def _identity_fallback(value: Any) -> Any:
    try:
        return _fallback(value)
    except Unhashable:
        return ("object", type(value).__qualname__, id(value))


def _identity_hash(value: Any) -> str:
    """Hash to detect changes within this process: content where possible, identity otherwise."""
    return content_hash(value, fallback=_identity_fallback)


# -- the entry point ---------------------------------------------------------------------------
def original_advise_all_indicators() -> Callable[[Any, dict], dict]:
    """Freqtrade's own ``IStrategy.advise_all_indicators`` (below any installed router)."""
    from freqtrade.strategy.interface import IStrategy

    func = inspect.unwrap(IStrategy.advise_all_indicators)
    if getattr(func, "__module__", "").startswith("freqtrade_opt_plugin"):
        raise RuntimeError("the original advise_all_indicators is not reachable")
    return func


def strategy_cacheability(strategy: Any) -> str | None:
    """None if indicators of `strategy` may be cached, else the reason they are not."""
    if not _check_internals():
        return "Freqtrade internals differ from the verified 2026.9 sources"
    config = getattr(strategy, "config", None)
    if not isinstance(config, dict):
        return "strategy has no config dict"
    if (config.get("freqai") or {}).get("enabled", False):
        return "FreqAI is enabled"
    if (config.get("exchange") or {}).get("use_public_trades", False):
        return "exchange.use_public_trades is on (trades data is not keyed)"
    plan = _class_plan(type(strategy))
    if plan.digest is None:
        return plan.reason
    return None


def strategy_identity(strategy: Any) -> str:
    """Digest of everything the strategy's code may depend on besides config, data and ``dp``.

    That is all of its user code (every method of its user classes and the user modules they
    reach, scanned for nondeterminism, trade-loop callbacks included), the libraries' versions,
    and its whole state (instance attributes, user class data, plain-data module globals).
    Raises `Unhashable` naming the reason when that cannot be established.
    """
    plan = _cacheable_plan(strategy, whole=True)
    return content_hash(plan.digest, _state_digest(strategy, plan))


def strategy_sources(strategy: Any) -> list[str]:
    """Source texts of the strategy's user code, as hashed by `strategy_identity` (raises
    `Unhashable` like it)."""
    return list(_cacheable_plan(strategy, whole=True).sources)


def indicator_cache_key(strategy: Any, pair: str, pair_data: pd.DataFrame) -> str:
    """The manifest key of one pair (static + state + input); raises `Unhashable`."""
    plan = _cacheable_plan(strategy)
    return make_key("indicators-manifest/1", plan.digest, _state_digest(strategy, plan), pair,
                    content_hash(pair_data))


def cached_advise_all_indicators(
    strategy: Any,
    data: dict[str, pd.DataFrame],
    original: Callable[[Any, dict], dict] | None = None,
) -> dict[str, pd.DataFrame]:
    """``strategy.advise_all_indicators(data)``, reusing cached per-pair results when valid.

    `original` (default: Freqtrade's own, below any router) computes what is not reused; its
    exceptions propagate unchanged, marked with `router.call_original`. A failure of the caching
    machinery itself never does: that pair is computed by the original (one warning per process).
    """
    from freqtrade_opt_plugin.router import call_original

    original = functools.partial(call_original, original or original_advise_all_indicators())
    try:
        prepared = _prepare(strategy)
    except Exception as exc:  # noqa: BLE001 - the machinery must never break a backtest
        _internal_error(exc)
        prepared = None
    if prepared is None:
        return original(strategy, data)
    cache, plan = prepared

    from freqtrade.strategy.strategy_validation import StrategyResultValidator

    name = type(strategy).__name__
    result: dict[str, pd.DataFrame] = {}
    reused = 0
    # This call's entries must fit in the cache together, or each run would evict the entries
    # the next run needs (and be slower than no cache): pairs beyond the budget are not stored.
    budget = _Budget(int(cache.size_limit * BUDGET_SHARE))
    for pair, pair_data in data.items():
        manifest_key: str | None = None
        frame: pd.DataFrame | None = None
        try:
            manifest_key = indicator_cache_key(strategy, pair, pair_data)
            frame = _lookup(cache, strategy, manifest_key)
        except Unhashable as exc:
            _debug_once(name, str(exc))
            manifest_key = None
        except Exception as exc:  # noqa: BLE001
            _internal_error(exc)
            manifest_key, frame = None, None
        if frame is not None:
            validator = StrategyResultValidator(pair_data,
                                                warn_only=strategy.disable_dataframe_checks)
            validator.assert_df(frame)  # as the original does (same frames: same outcome)
            result[pair] = frame
            reused += 1
            budget.used += estimate_memory(frame)
            continue
        if manifest_key is None:
            result[pair] = original(strategy, {pair: pair_data})[pair]
            continue
        result[pair] = _compute_and_store(cache, strategy, plan, original, pair, pair_data,
                                          manifest_key, budget)
    if reused:
        logger.info("freqtrade-opt: reused cached indicators of %d/%d pairs for %s", reused,
                    len(data), name)
    return result


def _prepare(strategy: Any) -> tuple[Any, _ClassPlan] | None:
    """(cache, class plan) when this strategy's indicators may be cached, else None."""
    settings = get_settings()
    if not (settings.enabled and settings.indicators):
        return None
    cache = get_cache(CACHE_NAME)
    if cache.bypassed is not None:
        return None
    reason = strategy_cacheability(strategy)
    if reason is not None:
        _debug_once(type(strategy).__name__, reason)
        return None
    return cache, _class_plan(type(strategy))


_internal_errors: list[str] = []


def _internal_error(exc: BaseException) -> None:
    if not _internal_errors:
        logger.warning("freqtrade-opt indicator cache: internal error (%s: %s); indicators are "
                       "computed normally", type(exc).__name__, exc, exc_info=True)
    _internal_errors.append(repr(exc))


def _lookup(cache: Any, strategy: Any, manifest_key: str) -> pd.DataFrame | None:
    manifest = cache.get(manifest_key)
    if manifest is MISSING:
        return None
    try:
        replayed = _replayed_digest(manifest, strategy.config, vars(strategy).get("dp"))
    except Exception as exc:  # noqa: BLE001 - an unusable manifest is a miss
        logger.debug("freqtrade-opt indicator cache: manifest not usable (%s)", exc)
        return None
    frame = cache.get(make_key("indicators/1", manifest_key, replayed))
    if frame is MISSING or not isinstance(frame, pd.DataFrame):
        return None
    return frame


@dataclass
class _Budget:
    limit: int
    used: int = 0


def _compute_and_store(cache: Any, strategy: Any, plan: _ClassPlan, original: Callable,
                       pair: str, pair_data: pd.DataFrame, manifest_key: str,
                       budget: _Budget) -> pd.DataFrame:
    name = type(strategy).__name__
    attributes = vars(strategy)
    config = attributes.get("config")
    if type(config) is not dict:
        _debug_once(name, "the strategy's config is not an instance attribute dict")
        return original(strategy, {pair: pair_data})[pair]
    reads = _Reads()
    try:
        state_before = _mutation_digest(strategy)
        config_before = _identity_hash(config)
        swapped: dict[str, Any] = {"config": _RecordingDict(config, (), reads)}
        if attributes.get("dp") is not None:
            swapped["dp"] = _DataProviderRecorder(attributes["dp"], reads)
        if attributes.get("wallets") is not None:
            swapped["wallets"] = _Tripwire(attributes["wallets"], "self.wallets", reads)
        saved = {key: attributes[key] for key in swapped}
    except Exception as exc:  # noqa: BLE001
        _internal_error(exc)
        return original(strategy, {pair: pair_data})[pair]
    attributes.update(swapped)
    try:
        frame = original(strategy, {pair: pair_data})[pair]
    finally:
        attributes.update(saved)
    try:
        _store(cache, strategy, reads, config, state_before, config_before, frame, pair,
               manifest_key, budget)
    except Exception as exc:  # noqa: BLE001 - storing is optional, the frame is the result
        _internal_error(exc)
    return frame


def _store(cache: Any, strategy: Any, reads: _Reads, config: dict, state_before: str,
           config_before: str, frame: pd.DataFrame, pair: str, manifest_key: str,
           budget: _Budget) -> None:
    name = type(strategy).__name__
    problem = reads.problems[0] if reads.problems else None
    if problem is None and _identity_hash(config) != config_before:
        problem = "the run changed the config"
    if problem is None and _mutation_digest(strategy) != state_before:
        problem = "populate_indicators changed the strategy's state"
    if problem is not None:
        _debug_once(name, problem)
        return
    try:
        entry_key = make_key("indicators/1", manifest_key, _recorded_digest(reads, config))
    except Unhashable as exc:
        _debug_once(name, f"a config value it reads cannot be hashed: {exc}")
        return
    size = estimate_memory(frame)
    if budget.used + size > budget.limit:
        cache.skip(f"{name} {pair}: this run's indicators exceed {BUDGET_SHARE:.0%} of the "
                   f"'{CACHE_NAME}' cache ({cache.size_limit / 2**20:.0f} MB); raise "
                   f"FREQTRADE_OPT_CACHE_{CACHE_NAME.upper()}_SIZE_MB to cache every pair")
        return
    budget.used += size
    if cache.set(entry_key, frame):
        cache.set(manifest_key, _manifest(reads))
        logger.debug("freqtrade-opt indicator cache: stored %s %s", name, pair)
