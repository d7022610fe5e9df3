"""Freqtrade code replaced while the process runs, which the reuse caches' keys cannot see.

The keys cover Freqtrade's files (size and modification time), not what the process rebinds
after importing them: a test's ``mock.patch`` of
``freqtrade.optimize.backtesting.amount_to_contract_precision`` or of
``Exchange.get_max_pair_stake_amount`` changes what a backtest computes under the same key.
`remember` records the functions and classes every Freqtrade module binds, and the functions
and descriptors of every class it defines, when the plugin first sees the module (after its own
Routers are installed); `replaced` names the bindings that differ now, plus any
``unittest.mock`` object found there or on the engine's instances. A Router of this plugin (or
the original it wraps, as hot targets switch between them) and this plugin's own functions (the
offline markets fixture) count as the same binding.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Iterable
from typing import Any


_PLUGIN = "freqtrade_opt_plugin"
_CODE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, staticmethod,
         classmethod, property)
#: Freqtrade module name -> {global name: value}, and class -> {attribute: value}.
_globals: dict[str, dict[str, Any]] = {}
_classes: dict[type, dict[str, Any]] = {}


def _is_mock(value: Any) -> bool:
    mock = sys.modules.get("unittest.mock")
    return mock is not None and isinstance(value, mock.NonCallableMock)


def _code(mapping: Any) -> dict[str, Any]:
    return {name: value for name, value in list(mapping.items())
            if isinstance(value, _CODE) or _is_mock(value)}


def remember(modules: Iterable[types.ModuleType]) -> None:
    """Record the code bindings of the Freqtrade `modules` not recorded yet."""
    for module in modules:
        name = getattr(module, "__name__", "")
        if name in _globals or not (name == "freqtrade" or name.startswith("freqtrade.")):
            continue
        namespace = vars(module)
        _globals[name] = _code(namespace)
        for value in list(namespace.values()):
            if isinstance(value, type) and value.__module__ == name and value not in _classes:
                _classes[value] = _code(vars(value))


def _unwrapped(value: Any) -> Any:
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    try:
        return inspect.unwrap(value)  # this plugin's Routers keep the original as __wrapped__
    except (ValueError, TypeError):
        return value


def _differs(before: Any, now: Any) -> bool:
    if now is before:
        return False
    if _is_mock(now):
        return True
    now = _unwrapped(now)
    if str(getattr(now, "__module__", "")).startswith(_PLUGIN):
        return False  # this plugin's own code (its version is part of the keys)
    return now is not _unwrapped(before)


def replaced(instances: Iterable[Any] = (), ignore: Iterable[str] = (),
             limit: int = 3) -> list[str]:
    """Up to `limit` bindings replaced since `remember` (``module.name`` / ``Class.name``, except
    those in `ignore`), and ``unittest.mock`` objects in the ``__dict__`` of `instances` (the
    exchange, the engine)."""
    found = _replaced(instances)
    skip = set(ignore)
    return [name for name in found if name not in skip][:limit]


def _replaced(instances: Iterable[Any]) -> list[str]:
    found: list[str] = []
    for name, recorded in list(_globals.items()):
        namespace = vars(sys.modules[name]) if name in sys.modules else {}
        found += [f"{name}.{attr}" for attr, value in recorded.items()
                  if _differs(value, namespace.get(attr))]
        found += [f"{name}.{attr}" for attr, value in list(namespace.items())
                  if attr not in recorded and _is_mock(value)]
    for cls, recorded in list(_classes.items()):
        attrs = vars(cls)
        found += [f"{cls.__qualname__}.{attr}" for attr, value in recorded.items()
                  if _differs(value, attrs.get(attr))]
        found += [f"{cls.__qualname__}.{attr}" for attr, value in list(attrs.items())
                  if attr not in recorded and _is_mock(value)]
    for instance in instances:
        found += [f"{type(instance).__name__}().{attr}"
                  for attr, value in list(getattr(instance, "__dict__", {}).items())
                  if _is_mock(value)]
    return found
