"""Regenerate ``markets.json``, the static binance markets fixture (no network).

The fixture is produced by ccxt's own ``binance.parse_market`` from hand-written ``exchangeInfo``
symbol entries, so every market has exactly the structure ccxt gives after ``load_markets``
(precisionMode TICK_SIZE: ``precision.price`` is the tick size, ``precision.amount`` the step
size, both floats; ``limits`` from the PRICE_FILTER / LOT_SIZE / MARKET_LOT_SIZE / NOTIONAL
filters). Tick and step sizes are those binance used for these symbols.

* spot (``GET /api/v3/exchangeInfo``): maker/taker fee 0.001;
* USDT-M perpetual swaps (``GET /fapi/v1/exchangeInfo``, e.g. ``BTC/USDT:USDT``): linear,
  settled in USDT, contractSize 1, maker 0.0002 / taker 0.0005 (ccxt's linear fees). Leverage
  tiers are not part of the fixture: Freqtrade reads its bundled ``binance_leverage_tiers.json``
  in dry-run.

Like ccxt's ``load_markets`` on binance, one document holds both kinds; Freqtrade picks the
markets of its trading mode.

Run ``python -m freqtrade_opt_plugin.offline.build_markets`` to rewrite the fixture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


FIXTURE_PATH = Path(__file__).with_name("markets.json")

# symbol id, base, quote, tickSize, stepSize, maxQty, minNotional, margin allowed
_SYMBOLS: list[tuple[str, str, str, str, str, str, str, bool]] = [
    ("BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "9000", "5", True),
    ("ETHUSDT", "ETH", "USDT", "0.01", "0.0001", "9000", "5", True),
    ("BNBUSDT", "BNB", "USDT", "0.01", "0.001", "9000", "5", True),
    ("SOLUSDT", "SOL", "USDT", "0.01", "0.001", "9000", "5", True),
    ("XRPUSDT", "XRP", "USDT", "0.0001", "0.1", "9222449", "5", True),
    ("ADAUSDT", "ADA", "USDT", "0.0001", "0.1", "900000", "5", True),
    ("DOGEUSDT", "DOGE", "USDT", "0.00001", "1", "9000000", "1", True),
    ("LTCUSDT", "LTC", "USDT", "0.01", "0.001", "90000", "5", True),
    ("DOTUSDT", "DOT", "USDT", "0.001", "0.01", "9000000", "5", True),
    ("LINKUSDT", "LINK", "USDT", "0.01", "0.01", "9000000", "5", True),
    ("AVAXUSDT", "AVAX", "USDT", "0.01", "0.01", "9000000", "5", True),
    ("TRXUSDT", "TRX", "USDT", "0.0001", "0.1", "9000000", "1", True),
    ("ATOMUSDT", "ATOM", "USDT", "0.001", "0.01", "9000000", "5", True),
    ("UNIUSDT", "UNI", "USDT", "0.001", "0.01", "9000000", "1", True),
    ("NEARUSDT", "NEAR", "USDT", "0.001", "0.1", "9000000", "5", True),
    ("FILUSDT", "FIL", "USDT", "0.001", "0.01", "9000000", "5", True),
    ("SHIBUSDT", "SHIB", "USDT", "0.00000001", "1", "92233720368", "5", True),
    ("ETHBTC", "ETH", "BTC", "0.00001", "0.0001", "100000", "0.0001", True),
    ("BNBBTC", "BNB", "BTC", "0.000001", "0.001", "100000", "0.0001", True),
    ("LTCBTC", "LTC", "BTC", "0.000001", "0.001", "100000", "0.0001", True),
    ("SOLBTC", "SOL", "BTC", "0.0000001", "0.001", "92141578", "0.0001", True),
    ("XRPBTC", "XRP", "BTC", "0.00000001", "1", "92141578", "0.0001", True),
    ("XRPETH", "XRP", "ETH", "0.0000001", "1", "90000000", "0.001", False),
]

# USDT-M perpetuals: symbol id, base, tickSize, minPrice, maxPrice, stepSize, maxQty,
# market maxQty, minNotional, pricePrecision, quantityPrecision, onboardDate (ms)
_SWAP_SYMBOLS: list[tuple[str, str, str, str, str, str, str, str, str, int, int, int]] = [
    ("BTCUSDT", "BTC", "0.10", "556.80", "4529764", "0.001", "1000", "120", "100", 2, 3,
     1569398400000),
    ("ETHUSDT", "ETH", "0.01", "39.86", "306177", "0.001", "10000", "2000", "20", 2, 3,
     1569398400000),
    ("BNBUSDT", "BNB", "0.010", "6.600", "100000", "0.01", "100000", "2000", "5", 3, 2,
     1581498000000),
    ("SOLUSDT", "SOL", "0.0100", "0.4200", "6857", "1", "1000000", "5000", "5", 4, 0,
     1600329600000),
    ("XRPUSDT", "XRP", "0.0001", "0.0143", "100000", "0.1", "10000000", "2000000", "5", 4, 1,
     1578355200000),
]

_SWAP_ORDER_TYPES = [
    "LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]

_ORDER_TYPES = [
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]


def _fmt(value: str) -> str:
    """Binance writes decimals with 8 fraction digits ("0.01000000")."""
    return f"{float(value):.8f}"


def _raw_symbol(
    sym: str, base: str, quote: str, tick: str, step: str, max_qty: str, notional: str, margin: bool
) -> dict[str, Any]:
    """One ``GET /api/v3/exchangeInfo`` symbol entry, as binance returns it."""
    max_price = "1000000" if quote == "USDT" else "1000"
    return {
        "symbol": sym,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": _ORDER_TYPES,
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": margin,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _fmt(tick),
                "maxPrice": _fmt(max_price),
                "tickSize": _fmt(tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _fmt(step),
                "maxQty": _fmt(max_qty),
                "stepSize": _fmt(step),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": _fmt(str(float(max_qty) / 100)),
                "stepSize": "0.00000000",
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": _fmt(notional),
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"] if margin else ["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _raw_swap_symbol(
    sym: str, base: str, tick: str, min_price: str, max_price: str, step: str, max_qty: str,
    market_max_qty: str, notional: str, price_precision: int, quantity_precision: int,
    onboard: int,
) -> dict[str, Any]:
    """One ``GET /fapi/v1/exchangeInfo`` symbol entry (USDT-M perpetual), as binance returns it."""
    return {
        "symbol": sym,
        "pair": sym,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": onboard,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base,
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": price_precision,
        "quantityPrecision": quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": min_price, "maxPrice": max_price,
             "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": max_qty, "stepSize": step},
            {"filterType": "MARKET_LOT_SIZE", "minQty": step, "maxQty": market_max_qty,
             "stepSize": step},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": notional},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": _SWAP_ORDER_TYPES,
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSet": ["GRID", "COPY"],
    }


def build_markets() -> dict[str, Any]:
    """Parse the raw symbol entries with ccxt (offline) into the fixture document."""
    import ccxt

    api = ccxt.binance()
    margin_ids = [s[0] for s in _SYMBOLS if s[7]]
    api.options["crossMarginPairsData"] = margin_ids
    api.options["isolatedMarginPairsData"] = margin_ids
    markets: dict[str, Any] = {}
    for entry in _SYMBOLS:
        market = api.parse_market(_raw_symbol(*entry))
        markets[market["symbol"]] = market
    for swap in _SWAP_SYMBOLS:
        market = api.parse_market(_raw_swap_symbol(*swap))
        markets[market["symbol"]] = market
    return {
        "exchange": "binance",
        "trading_modes": ["spot", "futures"],
        "precision_mode": "TICK_SIZE",
        "generated_with": f"ccxt {ccxt.__version__} binance.parse_market",
        "markets": dict(sorted(markets.items())),
    }


def main() -> None:
    document = build_markets()
    FIXTURE_PATH.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"wrote {len(document['markets'])} markets to {FIXTURE_PATH}")


if __name__ == "__main__":
    main()
