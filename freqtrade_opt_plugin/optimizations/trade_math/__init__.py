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

import functools
from collections.abc import Callable
from typing import Any

from freqtrade_opt_plugin.optimizations.trade_math.checks import verify_trade_math
from freqtrade_opt_plugin.optimizations.trade_math.fingerprints import TARGETS
from freqtrade_opt_plugin.optimizations.trade_math.methods import (
    build_close_trade_value,
    build_open_trade_value,
    build_profit_ratio,
)
from freqtrade_opt_plugin.registry import BenchCase, Optimization, OptimizationLevel, VerifyCase


_OWNER = "freqtrade.persistence.trade_model:LocalTrade"
Factory = Callable[[Callable], Callable]


@functools.cache
def _bench_trade() -> Any:
    """A leveraged futures short with funding fees (every term of the formulas is used). One
    shared trade: the methods only read it (and a trade has no equality to compare copies)."""
    from datetime import UTC, datetime

    from freqtrade.enums import TradingMode
    from freqtrade.persistence.trade_model import LocalTrade

    return LocalTrade(
        pair="ETH/USDT:USDT", stake_amount=61.25, amount=0.35, open_rate=1750.13,
        fee_open=0.0005, fee_close=0.0005, is_short=True, leverage=3.0, interest_rate=0.0005,
        trading_mode=TradingMode.FUTURES, exchange="binance", funding_fees=-0.0213,
        open_date=datetime(2024, 1, 1, tzinfo=UTC), close_date=datetime(2024, 1, 3, tzinfo=UTC),
    )


def _bench_rate() -> tuple[tuple, dict]:
    return (_bench_trade(), 1712.77), {}


def _bench_open_value() -> tuple[tuple, dict]:
    return (_bench_trade(), 0.35, 1750.13), {}


_VERIFY = VerifyCase(verify_trade_math)


def _optimization(name: str, attribute: str, factory: Factory, description: str,
                  bench: BenchCase) -> Optimization:
    return Optimization(
        name=name,
        target=f"{_OWNER}.{attribute}",
        factory=factory,
        tier=OptimizationLevel.AGGRESSIVE,
        fingerprints=TARGETS[attribute],
        description=description,
        performance_threshold=0.5,
        mutates_arguments=False,  # they only read the trade
        # Shadow runs would deep-copy the trade (its orders, SQLAlchemy state) on a share of
        # ~150k calls per backtest; exactness is proven by the tests instead.
        shadow=False,
        # ~145k calls per backtest of a few microseconds each: lean routing (see `registry`).
        hot=True,
        verify_case=_VERIFY,
        bench_case=bench,
    )


OPTIMIZATIONS: tuple[Optimization, ...] = (
    _optimization(
        "trade_math_profit_ratio", "calc_profit_ratio", build_profit_ratio,
        "Profit ratio of a trade at a rate with integer-pair Precise arithmetic: no Precise "
        "objects, float operands parsed once, no result text.",
        BenchCase(_bench_rate, repeat=200, description="futures short, leverage 3, funding")),
    _optimization(
        "trade_math_close_value", "calc_close_trade_value", build_close_trade_value,
        "Close value of a trade (fees, margin interest, funding fees) with integer-pair Precise "
        "arithmetic.",
        BenchCase(_bench_rate, repeat=200, description="futures short, leverage 3, funding")),
    _optimization(
        "trade_math_open_value", "_calc_open_trade_value", build_open_trade_value,
        "Open value of a trade (fees) with integer-pair Precise arithmetic.",
        BenchCase(_bench_open_value, repeat=200, description="futures short, leverage 3")),
)
