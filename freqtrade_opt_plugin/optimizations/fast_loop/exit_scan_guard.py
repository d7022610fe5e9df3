"""Version guard of the exit scanner: the Freqtrade functions whose behaviour its proof relies
on, fingerprinted from their module's source file (a Router installed on one does not hide a
change). `ExitScanner.build` refuses to run on any difference; the driver may add
`FINGERPRINTS` to its own guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from freqtrade_opt_plugin.optimizations.fast_loop import guard


#: Source fingerprints (Freqtrade 2026.9) of every function whose behaviour the proof relies on.
FINGERPRINTS: Mapping[str, str] = {
    "freqtrade.optimize.backtesting:Backtesting._check_trade_exit": "d7591f1e2954162b",
    "freqtrade.optimize.backtesting:Backtesting._run_funding_fees": "0cea1ad872bf8cc6",
    "freqtrade.strategy.interface:IStrategy.should_exit": "dc6ff492c24a82f6",
    "freqtrade.strategy.interface:IStrategy.ft_stoploss_adjust": "e6628c792f2fa202",
    "freqtrade.strategy.interface:IStrategy.ft_stoploss_reached": "ac31ef34c67a6531",
    "freqtrade.strategy.interface:IStrategy.min_roi_reached": "168358ad5d02d7c5",
    "freqtrade.strategy.interface:IStrategy.min_roi_reached_entry": "c5ed9905f7e7acc2",
    "freqtrade.strategy.interface:IStrategy.custom_exit": "dde438dae767ebf4",
    "freqtrade.persistence.trade_model:LocalTrade.adjust_min_max_rates": "58122fd60737f16c",
    "freqtrade.persistence.trade_model:LocalTrade.adjust_stop_loss": "f8610ecb91c9311c",
    "freqtrade.persistence.trade_model:LocalTrade.__set_stop_loss": "5ad5b1d5be9de8a7",
    "freqtrade.persistence.trade_model:LocalTrade.calc_profit_ratio": "986365121fc613b7",
    "freqtrade.persistence.trade_model:LocalTrade.calc_close_trade_value": "02f0379b49fb2d24",
    "freqtrade.persistence.trade_model:LocalTrade._calc_base_close": "af129a3dd6b2cac7",
    "freqtrade.persistence.trade_model:LocalTrade.has_open_orders": "2a8e65b8b2c15423",
    "freqtrade.exchange.exchange_utils:price_to_precision": "080ffc7e3cefdb26",
    "freqtrade.optimize.backtesting:Backtesting._get_ohlcv_as_lists": "7cfe09a54391f56d",
    "freqtrade.exchange.exchange_utils:__price_to_precision_significant_digits": "c77d42f5d25d85a8",
}


def live_fingerprints() -> dict[str, str | None]:
    """Fingerprint of each `FINGERPRINTS` target in the installed Freqtrade (None: not found)."""
    return guard.live_fingerprints(FINGERPRINTS)


def fingerprint_mismatches() -> list[str]:
    """Targets whose installed source differs from the reviewed one (empty: guard passes)."""
    return list(guard.mismatches_of(FINGERPRINTS))


@cache
def _cached_mismatches() -> tuple[str, ...]:
    return tuple(fingerprint_mismatches())
