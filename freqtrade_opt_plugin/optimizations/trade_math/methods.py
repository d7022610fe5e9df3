"""Replacements for `LocalTrade`'s profit math, built from the function they replace.

Each ``build_*(wrapped)`` returns a function with the original method's signature that computes
the same float through `exact` (integer pairs instead of `FtPrecise` objects) and hands every
call it does not cover to ``wrapped`` (the original, or the next optimization on the target).

What "the same" rests on, per method (the original's source in `fingerprints.SOURCES`):

* ``calc_close_trade_value``: same guard, same operands in the same order
  (``amount or self.amount``, ``self.trading_mode or SPOT``, ``fee or 0.0``), `_calc_base_close`
  inlined as `Precise` mul / mul / add-or-sub, margin interest from the trade's own
  ``calculate_interest()`` (a `Precise`, whose integer and decimals are used), futures funding
  fees added to the same float. An unknown trading mode goes to ``wrapped`` (which raises).
* ``calc_profit_ratio``: the close value as above, the open value as ``_calc_open_trade_value``,
  then the original's float expression and ``round(..., 8)`` verbatim.
* ``_calc_open_trade_value``: `Precise` mul / mul / add-or-sub, ``float`` at the end.

Inlining a helper is only correct while the trade's class uses Freqtrade's helper: a subclass
that overrides ``calc_close_trade_value``, ``_calc_base_close`` or ``_calc_open_trade_value``, or
a foreign patch of them, sends the call to ``wrapped``. A helper counts as Freqtrade's when it is
Freqtrade's function (verified fingerprint), a Router in front of it, or one of these
replacements (`mark_exact`); the verdict is memoized per class and helper objects.

Operands are parsed exactly as `FtPrecise` parses them, whatever their type (``str()`` of an
int, a numpy scalar, even an `FtPrecise`, which Freqtrade passes as an amount after a position
change). An operand `Precise` rejects (``None`` rate or fee, NaN, infinity) raises the same
``ValueError`` here; these methods only read the trade, so nothing needs undoing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ccxt.base.precise import Precise
from freqtrade.enums import TradingMode

from freqtrade_opt_plugin.optimizations.trade_math.exact import memo_get, parse, pow10, to_float
from freqtrade_opt_plugin.optimizations.trade_math.fingerprints import (
    helper_sources_verified,
    is_verified_helper,
    mark_exact,
)


logger = logging.getLogger(__name__)

#: Helpers of the trade that the replacements inline instead of calling.
INLINED = ("calc_close_trade_value", "_calc_base_close", "_calc_open_trade_value")
_SPOT = TradingMode.SPOT
_MARGIN = TradingMode.MARGIN
_FUTURES = TradingMode.FUTURES
_DELEGATE = object()  # marker: the fast path does not cover this call
#: class -> (its three inlined helpers as last seen, whether they are Freqtrade's)
_verdicts: dict[type, tuple[object, object, object, bool]] = {}


def _inlinable(cls: type) -> bool:
    """Whether `cls` resolves every inlined helper to Freqtrade's own (memoized per class and
    re-checked whenever one of its helpers is another object than last time)."""
    entry = _verdicts.get(cls)
    close, base = cls.calc_close_trade_value, cls._calc_base_close
    open_ = cls._calc_open_trade_value
    if entry is not None and entry[0] is close and entry[1] is base and entry[2] is open_:
        return entry[3]
    verdict = all(is_verified_helper(name, func)
                  for name, func in zip(INLINED, (close, base, open_), strict=True))
    if not verdict:
        logger.info("freqtrade-opt: trade_math leaves %s to the original: it overrides "
                    "one of %s", cls.__qualname__, ", ".join(INLINED))
    _verdicts[cls] = (close, base, open_, verdict)
    return verdict


def _close_value(trade: Any, rate: Any, amount: Any) -> Any:
    """`LocalTrade.calc_close_trade_value` with `_calc_base_close` inlined, or `_DELEGATE`."""
    if rate is None and not trade.close_rate:
        return 0.0
    amount = amount or trade.amount
    # parse(x), with the memo looked up here first (the common case: a float seen before)
    amount_int, amount_dec = (memo_get(amount) if type(amount) is float else None) or parse(amount)
    trading_mode = trade.trading_mode or _SPOT
    if trading_mode is _SPOT or trading_mode == _SPOT:
        return to_float(*_base_close(trade, amount_int, amount_dec, rate))
    if trading_mode == _MARGIN:
        interest = trade.calculate_interest()
        if not isinstance(interest, Precise):
            return _DELEGATE
        if trade.is_short:
            # amount1 = amount1 + total_interest (Precise.add)
            interest_int, interest_dec = interest.integer, interest.decimals
            if amount_dec == interest_dec:
                amount_int = amount_int + interest_int
            elif amount_dec > interest_dec:
                amount_int = interest_int * pow10(amount_dec - interest_dec) + amount_int
            else:
                amount_int = amount_int * pow10(interest_dec - amount_dec) + interest_int
                amount_dec = interest_dec
            return to_float(*_base_close(trade, amount_int, amount_dec, rate))
        value_int, value_dec = _base_close(trade, amount_int, amount_dec, rate)
        # _calc_base_close(...) - total_interest (Precise.sub)
        interest_int, interest_dec = interest.integer, interest.decimals
        if value_dec == interest_dec:
            return to_float(value_int - interest_int, value_dec)
        if value_dec > interest_dec:
            return to_float(value_int - interest_int * pow10(value_dec - interest_dec), value_dec)
        return to_float(value_int * pow10(interest_dec - value_dec) - interest_int, interest_dec)
    if trading_mode == _FUTURES:
        funding_fees = trade.funding_fees or 0.0
        if trade.is_short:
            return to_float(*_base_close(trade, amount_int, amount_dec, rate)) - funding_fees
        return to_float(*_base_close(trade, amount_int, amount_dec, rate)) + funding_fees
    return _DELEGATE  # the original raises OperationalException


def _base_close(trade: Any, amount_int: int, amount_dec: int, rate: Any) -> tuple[int, int]:
    """`LocalTrade._calc_base_close` as an integer pair."""
    rate_int, rate_dec = (memo_get(rate) if type(rate) is float else None) or parse(rate)
    # close_value = amount * FtPrecise(rate); fees = close_value * FtPrecise(fee or 0.0)
    value = amount_int * rate_int
    value_dec = amount_dec + rate_dec
    fee = trade.fee_close or 0.0
    fee_int, fee_dec = (memo_get(fee) if type(fee) is float else None) or parse(fee)
    fees = value * fee_int
    fees_dec = value_dec + fee_dec
    if trade.is_short:  # close_value + fees (Precise.add)
        if value_dec == fees_dec:
            return value + fees, value_dec
        if value_dec > fees_dec:
            return fees * pow10(value_dec - fees_dec) + value, value_dec
        return value * pow10(fees_dec - value_dec) + fees, fees_dec
    # close_value - fees (Precise.sub)
    if value_dec == fees_dec:
        return value - fees, value_dec
    if value_dec > fees_dec:
        return value - fees * pow10(value_dec - fees_dec), value_dec
    return value * pow10(fees_dec - value_dec) - fees, fees_dec


def _open_value(trade: Any, amount: Any, open_rate: Any) -> float:
    """`LocalTrade._calc_open_trade_value`."""
    amount_int, amount_dec = parse(amount)
    rate_int, rate_dec = parse(open_rate)
    value = amount_int * rate_int
    value_dec = amount_dec + rate_dec
    fee_int, fee_dec = parse(trade.fee_open)
    fees = value * fee_int
    fees_dec = value_dec + fee_dec
    if trade.is_short:  # float(open_value - fees)
        if value_dec == fees_dec:
            return to_float(value - fees, value_dec)
        if value_dec > fees_dec:
            return to_float(value - fees * pow10(value_dec - fees_dec), value_dec)
        return to_float(value * pow10(fees_dec - value_dec) - fees, fees_dec)
    # float(open_value + fees)
    if value_dec == fees_dec:
        return to_float(value + fees, value_dec)
    if value_dec > fees_dec:
        return to_float(fees * pow10(value_dec - fees_dec) + value, value_dec)
    return to_float(value * pow10(fees_dec - value_dec) + fees, fees_dec)


def _declined(wrapped: Callable) -> Callable | None:
    """`wrapped` itself when the helper sources differ from the verified ones, else None."""
    problem = helper_sources_verified()
    if problem is None:
        return None
    logger.warning("freqtrade-opt: trade_math not applied: %s", problem)
    return wrapped


def build_close_trade_value(wrapped: Callable) -> Callable:
    """Replacement for `LocalTrade.calc_close_trade_value`."""
    declined = _declined(wrapped)
    if declined is not None:
        return declined

    def calc_close_trade_value(self, rate: float, amount: float | None = None) -> float:
        if _inlinable(type(self)):
            value = _close_value(self, rate, amount)
            if value is not _DELEGATE:
                return value
        return wrapped(self, rate, amount)

    return mark_exact(calc_close_trade_value, "calc_close_trade_value")


def build_profit_ratio(wrapped: Callable) -> Callable:
    """Replacement for `LocalTrade.calc_profit_ratio`."""
    declined = _declined(wrapped)
    if declined is not None:
        return declined

    def calc_profit_ratio(
        self, rate: float, amount: float | None = None, open_rate: float | None = None
    ) -> float:
        if not _inlinable(type(self)):
            return wrapped(self, rate, amount, open_rate)
        close_trade_value = _close_value(self, rate, amount)
        if close_trade_value is _DELEGATE:
            return wrapped(self, rate, amount, open_rate)
        if (amount is None) and (open_rate is None):
            open_trade_value = self.open_trade_value
        else:
            open_trade_value = _open_value(self, amount or self.amount,
                                           open_rate or self.open_rate)
        if open_trade_value == 0.0:
            return 0.0
        if self.is_short:
            profit_ratio = (1 - (close_trade_value / open_trade_value)) * self.leverage
        else:
            profit_ratio = ((close_trade_value / open_trade_value) - 1) * self.leverage
        return round(profit_ratio, 8)

    return mark_exact(calc_profit_ratio, "calc_profit_ratio")


def build_open_trade_value(wrapped: Callable) -> Callable:
    """Replacement for `LocalTrade._calc_open_trade_value`."""
    declined = _declined(wrapped)
    if declined is not None:
        return declined

    def _calc_open_trade_value(self, amount: float, open_rate: float) -> float:
        return _open_value(self, amount, open_rate)

    return mark_exact(_calc_open_trade_value, "_calc_open_trade_value")
