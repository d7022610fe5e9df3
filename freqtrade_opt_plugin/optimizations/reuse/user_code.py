"""The strategy's user code: which modules are user code, their sources and code digests, the
static scan for nondeterminism, and the per-class plan (static digest, attributes read).

See `freqtrade_opt_plugin.optimizations.reuse.indicators` for how the plan keys an entry; what a
run touches at run time is recorded by `.recording`.
"""

from __future__ import annotations

import ast
import collections
import importlib
import inspect
import logging
import sys
import sysconfig
import threading
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freqtrade_opt_plugin.cache.decorators import _code_digest
from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash


logger = logging.getLogger("freqtrade_opt_plugin.cache.indicators")

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


# -- results of the static analysis ------------------------------------------------------------
@dataclass(frozen=True)
class _ClassPlan:
    digest: str | None  # None: not cacheable
    reason: str = ""
    classes: tuple[type, ...] = field(default=(), repr=False)
    namespaces: tuple[dict, ...] = field(default=(), repr=False)
    sources: tuple[str, ...] = field(default=(), repr=False)  # the source texts in `digest`
    reads: frozenset[str] | None = None  # strategy attributes read; None: the whole state


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
            from freqtrade_opt_plugin.optimizations.reuse.state import _fallback

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
