"""`freqtrade-opt verify` for `trade_math`: the user's trades, original against replacement.

Each trade of the loaded (or quick) backtest becomes a `LocalTrade` with its own amount, rates,
fees, side, leverage and funding fees, in the config's trading mode; the method is called at the
trade's open, close, lowest and highest rate by Freqtrade's original and by the replacement, and
the floats must be bit-identical (or both raise the same exception).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd


def _trade(row: Any, config: dict[str, Any]) -> Any:
    from freqtrade.enums import TradingMode
    from freqtrade.persistence.trade_model import LocalTrade

    funding = getattr(row, "funding_fees", 0.0)
    return LocalTrade(
        pair=row.pair, stake_amount=row.stake_amount, amount=row.amount,
        open_rate=row.open_rate, fee_open=row.fee_open, fee_close=row.fee_close,
        is_short=bool(getattr(row, "is_short", False)),
        leverage=float(getattr(row, "leverage", 1.0) or 1.0),
        trading_mode=TradingMode(config.get("trading_mode") or "spot"),
        exchange=config.get("exchange", {}).get("name", "binance"),
        open_date=row.open_date.to_pydatetime(), close_date=row.close_date.to_pydatetime(),
        funding_fees=0.0 if funding is None or funding != funding else float(funding),
    )


def _outcome(func: Callable, *args: Any) -> tuple:
    try:
        value = func(*args)
    except Exception as exc:
        return ("raises", type(exc).__name__, str(exc))
    return (type(value).__name__, value.hex() if isinstance(value, float) else repr(value))


def compare_on_trades(method: str, original: Callable, optimized: Callable,
                      trades: pd.DataFrame, config: dict[str, Any]) -> str | None:
    """The first difference between `original` and `optimized` (LocalTrade.`method`) on
    `trades`, or None."""
    open_value = method == "_calc_open_trade_value"
    for row in trades.itertuples():
        trade = _trade(row, config)
        rates = [r for r in (row.open_rate, row.close_rate, getattr(row, "min_rate", None),
                             getattr(row, "max_rate", None))
                 if isinstance(r, float) and math.isfinite(r)]
        for rate in rates:
            args = (trade, row.amount, rate) if open_value else (trade, rate)
            expected, got = _outcome(original, *args), _outcome(optimized, *args)
            if got != expected:
                return (f"{row.pair} opened {row.open_date} at rate {rate!r}: {got} instead of "
                        f"{expected}")
    return None


def verify_trade_math(subject: Any, inputs: Any) -> Iterator[Any]:
    """A `VerifyCase.run` for the three trade_math targets (`subject`: a `verify.Subject`)."""
    from freqtrade_opt_plugin.checks import status_of

    if (problem := inputs.trades_problem()) is not None:
        yield subject.skip(problem)
        return
    method = subject.opt.qualname.rpartition(".")[2]
    for pair, trades in inputs.trade_scopes():
        difference = compare_on_trades(method, subject.original, subject.optimized, trades,
                                       inputs.config)
        yield subject.check(pair, "open, close, min, max rates", status_of(difference))
