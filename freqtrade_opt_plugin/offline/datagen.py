"""Deterministic, realistic OHLCV candles in Freqtrade's own storage format.

Prices follow a random walk with volatility regimes and drift phases (so strategies see trends,
ranges and spikes), are rounded to each pair's tick size from the markets fixture, and respect
``low <= open, close <= high``. Like real exchange data they contain gaps (missing candles: exchange
outages) and zero-volume candles (flat candles where open == high == low == close). Files are
written through Freqtrade's data handler (``user_data/data/binance/<PAIR>-5m.feather``).
For futures (``trading_mode="futures"``, pairs like ``BTC/USDT:USDT``) the handler writes the
futures candles, 1h mark candles (the futures candles resampled, as mark and last price track
each other) and funding rates every 8 hours (binance's cadence) in the 1h funding-rate file
Freqtrade's backtesting loads (``futures/<PAIR>-5m-futures.feather``, ``-1h-mark``,
``-1h-funding_rate``). The same (pairs, days, seed, end) always gives the same bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from freqtrade_opt_plugin.offline.markets import static_markets


#: A fixed end so the same arguments give the same files on any day.
DEFAULT_END = datetime(2025, 6, 1, tzinfo=UTC)

#: Approximate price levels (quote currency) to start the walk from.
REFERENCE_PRICES: dict[str, float] = {
    "BTC/USDT": 67000.0,
    "ETH/USDT": 3500.0,
    "BNB/USDT": 590.0,
    "SOL/USDT": 165.0,
    "XRP/USDT": 0.52,
    "ADA/USDT": 0.45,
    "DOGE/USDT": 0.16,
    "LTC/USDT": 84.0,
    "DOT/USDT": 7.1,
    "LINK/USDT": 17.5,
    "AVAX/USDT": 35.0,
    "TRX/USDT": 0.12,
    "ATOM/USDT": 8.6,
    "UNI/USDT": 9.8,
    "NEAR/USDT": 6.9,
    "FIL/USDT": 5.9,
    "SHIB/USDT": 0.0000245,
    "ETH/BTC": 0.052,
    "BNB/BTC": 0.0088,
    "LTC/BTC": 0.00125,
    "SOL/BTC": 0.00246,
    "XRP/BTC": 0.0000078,
    "XRP/ETH": 0.000149,
}

#: Default pairs, in the order ``--pairs N`` picks them.
DEFAULT_PAIRS: tuple[str, ...] = (
    "BTC/USDT",
    "ETH/USDT",
    "BNB/USDT",
    "SOL/USDT",
    "XRP/USDT",
    "ADA/USDT",
    "DOGE/USDT",
    "LTC/USDT",
    "DOT/USDT",
    "LINK/USDT",
    "AVAX/USDT",
    "TRX/USDT",
    "ATOM/USDT",
    "UNI/USDT",
    "NEAR/USDT",
    "FIL/USDT",
    "SHIB/USDT",
)


#: Hours between binance funding payments.
FUNDING_INTERVAL_HOURS = 8


@dataclass(frozen=True)
class GeneratedPair:
    pair: str
    path: Path
    candles: int
    gaps: int
    zero_volume: int


def default_pairs(count: int) -> list[str]:
    """The first ``count`` default USDT pairs (1 <= count <= len(DEFAULT_PAIRS))."""
    if not 1 <= count <= len(DEFAULT_PAIRS):
        raise ValueError(f"pairs must be between 1 and {len(DEFAULT_PAIRS)}, got {count}")
    return list(DEFAULT_PAIRS[:count])


def _round_to_tick(values: np.ndarray, tick: float) -> np.ndarray:
    # round(x / tick) * tick, then trimmed to the tick's decimals so 0.1 + 0.2 noise disappears
    decimals = max(0, int(np.ceil(-np.log10(tick))) + 1)
    return np.round(np.round(values / tick) * tick, decimals)


def generate_candles(
    pair: str,
    *,
    days: float,
    seed: int = 42,
    timeframe_minutes: int = 5,
    end: datetime = DEFAULT_END,
    tick_size: float | None = None,
    start_price: float | None = None,
    gap_rate: float = 0.002,  # share of candles missing (approximately)
    zero_volume_rate: float = 0.01,
) -> pd.DataFrame:
    """Candles for one pair as Freqtrade loads them (date UTC, open, high, low, close, volume)."""
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    if tick_size is None:
        markets = static_markets()
        if pair not in markets:
            raise ValueError(f"{pair} is not in the markets fixture; pass tick_size")
        tick_size = float(markets[pair]["precision"]["price"])
    if start_price is None:
        start_price = REFERENCE_PRICES.get(pair.split(":")[0], 100.0)  # futures: the spot level
    price0 = start_price
    rng = np.random.default_rng([seed, zlib.crc32(pair.encode())])
    n = int(days * 24 * 60 / timeframe_minutes)

    # volatility regimes (calm / normal / wild) lasting hours to days, and slow drift phases
    regime_len = rng.integers(24, 600, size=n // 24 + 2)
    regime_vol = rng.choice([0.0012, 0.0025, 0.0055], p=[0.35, 0.5, 0.15], size=regime_len.size)
    vol = np.repeat(regime_vol, regime_len)[:n]
    drift = np.repeat(rng.normal(0.0, 0.00004, size=n // 288 + 2), 288)[:n]
    returns = drift + vol * rng.standard_t(df=4, size=n) / np.sqrt(2.0)
    close = price0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([price0], close[:-1])) * np.exp(rng.normal(0, 0.0002, size=n))
    span = np.abs(close - open_)
    wick = vol * np.maximum(open_, close)
    high = np.maximum(open_, close) + np.abs(rng.normal(0, 0.6, size=n)) * wick + 0.1 * span
    low = np.minimum(open_, close) - np.abs(rng.normal(0, 0.6, size=n)) * wick - 0.1 * span
    low = np.maximum(low, tick_size)

    open_, high, low, close = (_round_to_tick(a, tick_size) for a in (open_, high, low, close))
    open_ = np.maximum(open_, tick_size)
    close = np.maximum(close, tick_size)
    high = np.maximum.reduce([high, open_, close])
    low = np.minimum.reduce([low, open_, close])

    volume = rng.lognormal(mean=np.log(2000.0 / max(price0, 1e-12) ** 0.5), sigma=0.9, size=n)
    volume *= 1 + 20 * vol  # busier when volatile
    volume = np.round(volume, 3)
    zero = rng.random(n) < zero_volume_rate
    if zero_volume_rate > 0 and not zero.any():
        zero[int(rng.integers(0, n))] = True
    volume[zero] = 0.0
    flat = close.copy()
    open_[zero] = high[zero] = low[zero] = flat[zero]

    step_ms = timeframe_minutes * 60_000
    end_ms = int(end.timestamp() * 1000) // step_ms * step_ms
    dates = end_ms - step_ms * np.arange(n, 0, -1, dtype=np.int64)
    # gaps: short runs (1-5) of missing candles, at least one per pair, never at either end
    keep = np.ones(n, dtype=bool)
    n_gaps = max(1, int(rng.poisson(n * gap_rate / 3))) if gap_rate > 0 and n > 20 else 0
    starts = np.sort(rng.integers(1, n - 6, size=n_gaps)) if n_gaps else []
    for start in starts:
        keep[max(1, start) : min(n - 1, start + int(rng.integers(1, 6)))] = False

    from freqtrade.data.converter import ohlcv_to_dataframe

    rows = np.column_stack([dates, open_, high, low, close, volume])[keep]
    ohlcv = [[int(r[0]), r[1], r[2], r[3], r[4], r[5]] for r in rows.tolist()]
    timeframe = f"{timeframe_minutes}m"
    # exactly what Freqtrade does with exchange candles, without filling the gaps
    return ohlcv_to_dataframe(
        ohlcv, timeframe, pair, fill_missing=False, drop_incomplete=False
    )


def futures_timeframes() -> tuple[str, str]:
    """Binance's (mark candle, funding rate) timeframes in the installed Freqtrade."""
    from freqtrade.exchange import Binance, Exchange

    options = {**Exchange._ft_has_default, **Binance._ft_has, **Binance._ft_has_futures}
    return options["mark_ohlcv_timeframe"], options["funding_fee_timeframe"]


def mark_candles(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Mark price candles: `candles` resampled to `timeframe` (hours without candles dropped)."""
    from freqtrade.exchange import timeframe_to_minutes

    frame = candles.set_index("date").resample(f"{timeframe_to_minutes(timeframe)}min").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    return frame.dropna().reset_index()


def funding_rates(pair: str, candles: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Funding rates every `FUNDING_INTERVAL_HOURS` over the span of `candles` (date UTC,
    funding_rate): around binance's 0.01 % base rate, sometimes negative, 8 decimals."""
    step = pd.Timedelta(hours=FUNDING_INTERVAL_HOURS)
    first = candles["date"].iloc[0].ceil(step)
    dates = pd.date_range(first, candles["date"].iloc[-1], freq=step)
    rng = np.random.default_rng([seed, zlib.crc32(pair.encode()), 8])
    rates = np.round(0.0001 + rng.normal(0.0, 0.0004, size=len(dates)), 8)
    return pd.DataFrame({"date": dates, "funding_rate": rates})


def write_pair_data(
    datadir: Path,
    pairs: Sequence[str],
    *,
    days: float,
    seed: int = 42,
    timeframe: str = "5m",
    end: datetime = DEFAULT_END,
    data_format: str = "feather",
    trading_mode: str = "spot",
) -> list[GeneratedPair]:
    """Generate and store candles for ``pairs`` under ``datadir`` (e.g. user_data/data/binance).

    ``trading_mode="futures"`` stores futures candles plus mark candles and funding rates.
    """
    from freqtrade.data.history.datahandlers import get_datahandler
    from freqtrade.enums import CandleType
    from freqtrade.exchange import timeframe_to_minutes

    if trading_mode not in ("spot", "futures"):
        raise ValueError(f"trading_mode must be 'spot' or 'futures', got {trading_mode!r}")
    candle_type = CandleType.FUTURES if trading_mode == "futures" else CandleType.SPOT
    minutes = timeframe_to_minutes(timeframe)
    Path(datadir).mkdir(parents=True, exist_ok=True)  # the handler creates one level only
    handler = get_datahandler(Path(datadir), data_format)
    written = []
    for pair in pairs:
        if (":" in pair) != (trading_mode == "futures"):
            raise ValueError(f"{pair} is not a {trading_mode} pair (futures pairs look like "
                             "BTC/USDT:USDT, spot pairs like BTC/USDT)")
        df = generate_candles(pair, days=days, seed=seed, timeframe_minutes=minutes, end=end)
        handler.ohlcv_store(pair, timeframe, df, candle_type)
        if trading_mode == "futures":
            mark_tf, funding_tf = futures_timeframes()
            handler.ohlcv_store(pair, mark_tf, mark_candles(df, mark_tf), CandleType.MARK)
            handler.ohlcv_store(pair, funding_tf, funding_rates(pair, df, seed=seed),
                                CandleType.FUNDING_RATE)
        expected = int(days * 24 * 60 / minutes)
        written.append(
            GeneratedPair(
                pair=pair,
                path=handler._pair_data_filename(Path(datadir), pair, timeframe, candle_type),
                candles=len(df),
                gaps=expected - len(df),
                zero_volume=int((df["volume"] == 0).sum()),
            )
        )
    return written


def write_resampled(
    datadir: Path,
    generated: Sequence[GeneratedPair],
    timeframe: str,
    *,
    data_format: str = "feather",
    trading_mode: str = "spot",
) -> list[Path]:
    """Store each generated pair's candles resampled to the longer `timeframe` (candles of the
    same price path: e.g. 5m main candles for 1m timeframe-detail data, gaps and zero-volume
    candles carried along; intervals without any candle dropped). Returns the files written."""
    from freqtrade.data.history.datahandlers import get_datahandler
    from freqtrade.enums import CandleType

    candle_type = CandleType.FUTURES if trading_mode == "futures" else CandleType.SPOT
    handler = get_datahandler(Path(datadir), data_format)
    written = []
    for item in generated:
        frame = mark_candles(pd.read_feather(item.path), timeframe)
        handler.ohlcv_store(item.pair, timeframe, frame, candle_type)
        written.append(handler._pair_data_filename(Path(datadir), item.pair, timeframe,
                                                   candle_type))
    return written


def synthetic_trades(n: int = 2000, *, pairs: int = 3, seed: int = 42) -> pd.DataFrame:
    """A trades frame shaped like a backtest export's (pair, open/close dates in UTC on a 5m
    grid with ties, profit_abs, profit_ratio), sorted by close date, for bench cases."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC").as_unit("us")
    candles = np.sort(rng.integers(0, max(1, n // 3), n))
    closes = start + pd.to_timedelta(candles * 300, unit="s")
    durations = pd.to_timedelta(rng.integers(1, 48, n) * 300, unit="s")
    profit_ratio = rng.normal(0.002, 0.02, n)
    return pd.DataFrame({
        "pair": [f"P{i % pairs}/USDT" for i in range(n)],
        "open_date": closes - durations,
        "close_date": closes,
        "profit_abs": profit_ratio * 100.0,
        "profit_ratio": profit_ratio,
    })
