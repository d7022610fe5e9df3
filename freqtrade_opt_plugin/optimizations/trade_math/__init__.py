"""Exact, object-free trade profit math (`LocalTrade` methods built on `FtPrecise`).

Freqtrade computes a trade's close value, open value and profit ratio with ccxt's `Precise`
(decimal strings as Python ints): for every open trade on every candle, `should_exit` calls
`calc_profit_ratio`, which builds about ten `Precise` objects, parses three float texts and
formats one result. These replacements do the same integer arithmetic on ``(integer, decimals)``
pairs (`exact`), memoize the parse of each float operand by value, and convert with correctly
rounded integer division instead of formatting and re-parsing text. Results are bit-identical
(see `exact` and `methods` for why, and the tests for the proof over the input domain).

Three optimizations, one per target, switchable separately:

* ``trade_math_profit_ratio``: ``LocalTrade.calc_profit_ratio`` (the hot one, with the close
  and open value inlined),
* ``trade_math_close_value``: ``LocalTrade.calc_close_trade_value`` (profit at exit, ROI),
* ``trade_math_open_value``: ``LocalTrade._calc_open_trade_value`` (entries, position changes).

They serve every mode (spot, margin, futures; long and short); live and dry-run trades (the
SQLAlchemy ``Trade`` subclass) take the same paths. A class that overrides one of the inlined
helpers, an unknown trading mode, or differing ccxt / FtPrecise sources go to the original.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

from freqtrade_opt_plugin.optimizations.trade_math.fingerprints import TARGETS
from freqtrade_opt_plugin.optimizations.trade_math.methods import (
    build_close_trade_value,
    build_open_trade_value,
    build_profit_ratio,
)
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel


_OWNER = "freqtrade.persistence.trade_model:LocalTrade"
Factory = Callable[[Callable], Callable]


# --- ADAPTER: until the Router's `Optimization.factory` lands (branch `router`). -------------
# The current Router passes no original to a replacement. This builds the replacement from the
# original found below the Router on first call. Delete it (and `_factory_fields`) when every
# supported plugin version has `factory`: then the factories are registered directly.
def _legacy_replacement(factory: Factory, attribute: str) -> Callable:
    built: Callable | None = None

    def replacement(*args, **kwargs):
        nonlocal built
        if built is None:
            from freqtrade.persistence.trade_model import LocalTrade

            built = factory(inspect.unwrap(inspect.getattr_static(LocalTrade, attribute)))
        return built(*args, **kwargs)

    replacement.__name__ = attribute
    return replacement


def _factory_fields(factory: Factory, attribute: str) -> dict[str, Callable]:
    if "factory" in {field.name for field in dataclasses.fields(Optimization)}:
        return {"factory": factory}
    return {"replacement": _legacy_replacement(factory, attribute)}
# --- end of ADAPTER -----------------------------------------------------------------------------


def _optimization(name: str, attribute: str, factory: Factory, description: str,
                  threshold: float) -> Optimization:
    return Optimization(
        name=name,
        target=f"{_OWNER}.{attribute}",
        tier=OptimizationLevel.AGGRESSIVE,
        fingerprints=TARGETS[attribute],
        description=description,
        performance_threshold=threshold,
        mutates_arguments=False,  # they only read the trade
        # Shadow runs would deep-copy the trade (its orders, SQLAlchemy state) on a share of
        # ~150k calls per backtest; exactness is proven by the tests instead.
        shadow=False,
        **_factory_fields(factory, attribute),
    )


OPTIMIZATIONS: tuple[Optimization, ...] = (
    _optimization(
        "trade_math_profit_ratio", "calc_profit_ratio", build_profit_ratio,
        "Profit ratio of a trade at a rate with integer-pair Precise arithmetic: no Precise "
        "objects, float operands parsed once, no result text.", 0.5),
    _optimization(
        "trade_math_close_value", "calc_close_trade_value", build_close_trade_value,
        "Close value of a trade (fees, margin interest, funding fees) with integer-pair Precise "
        "arithmetic.", 0.5),
    _optimization(
        "trade_math_open_value", "_calc_open_trade_value", build_open_trade_value,
        "Open value of a trade (fees) with integer-pair Precise arithmetic.", 0.5),
)
