"""Fingerprints of every function whose behaviour `trade_math` reproduces.

`TARGETS`: the patched `LocalTrade` methods, {version: fingerprint} as the Router checks them.
`TRADE_HELPERS`: the `LocalTrade` methods the replacements inline instead of calling;
`PRECISE_HELPERS`: the `FtPrecise` / ccxt `Precise` methods whose arithmetic `exact` performs on
integer pairs. The
targets' sources are checked by the activation; helper sources are checked here, once per
process, when a replacement is built (a differing helper means the replacement is not used),
and inlined trade helpers again per class (a subclass or foreign patch overriding them sends the
call to the original).

Recorded from Freqtrade 2026.9 with ccxt 4.5.90 (the versions the replacements were written and
tested against); ccxt 4.5.76, the oldest Freqtrade 2026.9 accepts, has the same sources for every
`PRECISE_HELPERS` entry (checked on its wheel). `scripts/collect_fingerprints.py` lists the
three targets: once it regenerates `verified.py`, every release whose target source equals
2026.9's is accepted as well (its inlined helpers must still match, or calls go to the original).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from freqtrade_opt_plugin.optimizations.verified import VERIFIED
from freqtrade_opt_plugin.registry import fingerprint


_TRADE_MODEL = "freqtrade.persistence.trade_model"


def _versions(attribute: str, fingerprint_2026_9: str) -> dict[str, str]:
    """The releases `verified.py` lists for the target (once generated), else 2026.9 alone."""
    listed = VERIFIED.get(f"{_TRADE_MODEL}:LocalTrade.{attribute}")
    if listed and listed.get("2026.9") == fingerprint_2026_9:
        return dict(listed)
    return {"2026.9": fingerprint_2026_9}


TARGETS: dict[str, dict[str, str]] = {
    "calc_close_trade_value": _versions("calc_close_trade_value", "02f0379b49fb2d24"),
    "calc_profit_ratio": _versions("calc_profit_ratio", "986365121fc613b7"),
    "_calc_open_trade_value": _versions("_calc_open_trade_value", "47efc22767fd38c6"),
}

#: LocalTrade methods inlined by the replacements: accepted fingerprints.
TRADE_HELPERS: dict[str, frozenset[str]] = {
    "calc_close_trade_value": frozenset({"02f0379b49fb2d24"}),
    "_calc_base_close": frozenset({"af129a3dd6b2cac7"}),
    "_calc_open_trade_value": frozenset({"47efc22767fd38c6"}),
}

#: (module, qualname) -> accepted fingerprints of the string arithmetic `exact` reproduces.
PRECISE_HELPERS: dict[tuple[str, str], frozenset[str]] = {
    ("freqtrade.util.ft_precise", "FtPrecise.__init__"): frozenset({"e6737b52fb0deac5"}),
    ("ccxt.base.precise", "Precise.__init__"): frozenset({"2cd1a872be801c41"}),
    ("ccxt.base.precise", "Precise.__add__"): frozenset({"b1ecee57e53dfbc4"}),
    ("ccxt.base.precise", "Precise.__sub__"): frozenset({"263f139762bdc47a"}),
    ("ccxt.base.precise", "Precise.__mul__"): frozenset({"218d133926e2b4ce"}),
    ("ccxt.base.precise", "Precise.mul"): frozenset({"28413b22434fc799"}),
    ("ccxt.base.precise", "Precise.add"): frozenset({"f1172d8c8c9936f3"}),
    ("ccxt.base.precise", "Precise.sub"): frozenset({"5fc719862704ad47"}),
    ("ccxt.base.precise", "pow10"): frozenset({"5c0db9febc5f2a3c"}),
    ("ccxt.base.precise", "Precise.reduce_digits"): frozenset({"7679f45805b84d48"}),
    ("ccxt.base.precise", "Precise.__str__"): frozenset({"d69c03dd224e3bf5"}),
    ("ccxt.base.precise", "Precise.__float__"): frozenset({"8f76b2953ed08591"}),
}


def _live(module: str, qualname: str) -> Callable:
    import importlib

    owner = importlib.import_module(module)
    for part in qualname.split("."):
        owner = getattr(owner, part)
    return owner


@functools.cache
def helper_sources_verified() -> str | None:
    """None when every `PRECISE_HELPERS` source is a verified one, else what differs."""
    from ccxt.base.precise import Precise
    from freqtrade.util.ft_precise import FtPrecise

    if FtPrecise.__mro__[1] is not Precise:
        return "FtPrecise is no longer a direct subclass of ccxt's Precise"
    for (module, qualname), accepted in PRECISE_HELPERS.items():
        try:
            found = fingerprint(_live(module, qualname))
        except Exception as exc:  # missing attribute, no source
            return f"{module}:{qualname} unavailable ({type(exc).__name__}: {exc})"
        if found not in accepted:
            return f"{module}:{qualname} differs from the verified source (fingerprint {found})"
    return None


@functools.cache
def _verified_function(name: str, func: Callable) -> bool:
    if hasattr(func, "__wrapped__"):  # a decorator: its source says nothing of what it does
        return False
    try:
        return fingerprint(func) in TRADE_HELPERS[name] and func.__module__ == _TRADE_MODEL
    except Exception:  # no source (e.g. defined at a prompt)
        return False


_EXACT_ATTRIBUTE = "__trade_math_exact__"


def mark_exact(func: Callable, name: str) -> Callable:
    """Tag a trade_math replacement of ``LocalTrade.<name>`` (exact by construction)."""
    setattr(func, _EXACT_ATTRIBUTE, name)
    return func


def is_verified_helper(name: str, func: object) -> bool:
    """Whether `func`, found as ``cls.<name>``, behaves as Freqtrade's verified helper.

    True for Freqtrade's own function, a Router of this plugin in front of it (Routers run only
    exact candidates) and trade_math's own replacement of it (`mark_exact`); False for anything
    else (a subclass override, a foreign patch, even one that sets ``__wrapped__``).
    """
    from freqtrade_opt_plugin.router import is_router

    if not callable(func):
        return False
    if getattr(func, _EXACT_ATTRIBUTE, None) == name:
        return True
    if is_router(func):
        func = getattr(func, "__wrapped__", None)
        if func is None or is_router(func):
            return False
    return _verified_function(name, func)
