"""Serve Freqtrade's exchange markets from a static fixture instead of the exchange's API.

Freqtrade's ``Exchange.__init__`` calls ``reload_markets`` which runs the coroutine
``Exchange._api_reload_markets`` -> ccxt ``load_markets`` -> HTTP requests. This module replaces
that one coroutine with one that hands the fixture to ccxt through ``set_markets``; the rest of
``reload_markets`` (copying markets to the sync ccxt object, fees, timestamps) runs unchanged, so
the exchange object is in the same state as after a real download.

Nothing else in ``freqtrade backtesting`` / ``hyperopt`` talks to the network for binance spot or
futures in dry-run (checked against Freqtrade 2026.9): ``fetch_trading_fees`` returns ``{}`` in
dry-run, ``load_leverage_tiers`` returns ``{}`` for spot and Freqtrade's bundled
``binance_leverage_tiers.json`` for futures in dry-run, ``check_time_offset`` and
``additional_exchange_init`` only act in live mode, ``get_fee`` reads the loaded markets.
``netguard.install_network_guard`` turns any remaining attempt into a loud failure.

Hyperopt workers do not need this: ``HyperOptimizer.prepare_hyperopt`` drops the exchange's ccxt
objects (``_api = _api_async = None``) before the pickled backtesting object is sent to them, and
markets travel with it in ``Exchange._markets``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any

from freqtrade.exceptions import OperationalException


logger = logging.getLogger(__name__)

FIXTURE_PATH = Path(__file__).with_name("markets.json")
#: The fixture path. Read by ``python -m freqtrade_opt_plugin.offline`` (another fixture than the
#: bundled one) and set by ``install_static_markets`` so child processes can tell (and repeat it).
#: Deliberately outside the ``FREQTRADE_OPT_`` namespace, which belongs to the plugin's settings.
MARKETS_ENV = "FREQTRADE_OFFLINE_MARKETS"

_original_reload: Any = None


class StaticMarketsError(OperationalException):
    """The fixture cannot serve the requested exchange / trading mode."""


@cache
def _read_fixture(path: str) -> dict[str, Any]:
    document = json.loads(Path(path).read_text())
    if not isinstance(document, dict) or not isinstance(document.get("markets"), dict):
        raise StaticMarketsError(f"{path} is not a markets fixture (expected a 'markets' object)")
    return document


def load_fixture(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The fixture document ``{"exchange": ..., "markets": {symbol: ccxt market}}`` (a copy)."""
    return copy.deepcopy(_read_fixture(str(Path(path or FIXTURE_PATH).resolve())))


def static_markets(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The fixture's ccxt markets by symbol (a fresh copy, safe to modify)."""
    return load_fixture(path)["markets"]


def install_static_markets(path: str | os.PathLike | None = None) -> None:
    """Make every Freqtrade ``Exchange`` load its markets from the fixture at ``path``.

    Idempotent; the last call's path wins. Raises ``StaticMarketsError`` (at market load time) if
    the configured exchange is not the fixture's exchange or the trading mode is not one of the
    fixture's (``trading_modes``; the bundled fixture has spot and USDT-M futures markets).
    """
    global _original_reload
    from freqtrade.exchange.exchange import Exchange

    fixture = str(Path(path or FIXTURE_PATH).resolve())
    document = _read_fixture(fixture)  # fail now on a bad fixture, not inside freqtrade
    expected = document.get("exchange", "binance")
    modes = document.get("trading_modes") or [document.get("trading_mode", "spot")]

    async def _api_reload_markets(self: Exchange, reload: bool = False) -> None:
        if self._api_async.id != expected:
            raise StaticMarketsError(
                f"the offline markets fixture {fixture} covers exchange '{expected}' only, "
                f"but the config uses '{self._api_async.id}'"
            )
        if self.trading_mode.value not in modes:
            raise StaticMarketsError(
                f"the offline markets fixture {fixture} covers {', '.join(modes)} markets only, "
                f"but the config uses trading_mode '{self.trading_mode.value}'"
            )
        self._api_async.set_markets(copy.deepcopy(document["markets"]))
        logger.info("Loaded %d %s markets from the offline fixture %s (no network)",
                    len(document["markets"]), expected, fixture)

    _api_reload_markets.__doc__ = f"Offline replacement: markets from {fixture}."
    _api_reload_markets._freqtrade_opt_offline = True  # type: ignore[attr-defined]
    if _original_reload is None:
        _original_reload = Exchange._api_reload_markets
    Exchange._api_reload_markets = _api_reload_markets  # type: ignore[method-assign]
    os.environ[MARKETS_ENV] = fixture


def uninstall_static_markets() -> None:
    """Restore Freqtrade's original market loading."""
    global _original_reload
    if _original_reload is None:
        return
    from freqtrade.exchange.exchange import Exchange

    Exchange._api_reload_markets = _original_reload  # type: ignore[method-assign]
    _original_reload = None
    os.environ.pop(MARKETS_ENV, None)


def static_markets_installed() -> bool:
    from freqtrade.exchange.exchange import Exchange

    return getattr(Exchange._api_reload_markets, "_freqtrade_opt_offline", False)
