"""Hashing the strategy's state (attributes, user class data, module globals) for keys, and
digests that detect what a run changed."""

from __future__ import annotations

import collections
import enum
import inspect
import types
from collections.abc import Iterable
from typing import Any

import pandas as pd

from freqtrade_opt_plugin.cache.decorators import _code_digest
from freqtrade_opt_plugin.cache.hashing import Unhashable, content_hash
from freqtrade_opt_plugin.optimizations.reuse.user_code import (
    _CLASS_SKIP,
    EXCLUDED_ATTRIBUTES,
    _class_plan,
    _ClassPlan,
    _function_of,
)


_ABSENT = "<absent>"


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


def _identity_fallback(value: Any) -> Any:
    try:
        return _fallback(value)
    except Unhashable:
        return ("object", type(value).__qualname__, id(value))


def _identity_hash(value: Any) -> str:
    """Hash to detect changes within this process: content where possible, identity otherwise."""
    return content_hash(value, fallback=_identity_fallback)
