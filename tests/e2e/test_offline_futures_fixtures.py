"""The offline futures set-up: USDT-M perpetual markets in the static fixture (reproducible,
spot markets unchanged) and generated futures, mark and funding-rate data where Freqtrade's
backtesting loads them."""

from __future__ import annotations

import json

import pandas as pd
import pytest


def test_markets_fixture_is_rebuilt_byte_for_byte_with_spot_and_swap_markets():
    from freqtrade_opt_plugin.offline.build_markets import FIXTURE_PATH, build_markets

    document = build_markets()
    assert json.dumps(document, indent=1, sort_keys=False) + "\n" == FIXTURE_PATH.read_text()
    markets = document["markets"]
    assert document["trading_modes"] == ["spot", "futures"]
    swaps = {s: m for s, m in markets.items() if m["swap"]}
    assert set(swaps) == {"BTC/USDT:USDT", "ETH/USDT:USDT", "BNB/USDT:USDT", "SOL/USDT:USDT",
                          "XRP/USDT:USDT"}
    for market in swaps.values():
        assert (market["linear"], market["settle"], market["contractSize"], market["type"],
                market["margin"], market["spot"]) == (True, "USDT", 1.0, "swap", False, False)
    assert swaps["BTC/USDT:USDT"]["precision"] == {"amount": 0.001, "price": 0.1, "base": 1e-08,
                                                   "quote": 1e-08}
    assert sum(m["spot"] for m in markets.values()) == 23


def test_futures_data_is_deterministic_and_where_freqtrade_loads_it(tmp_path):
    from freqtrade.configuration import TimeRange
    from freqtrade.data.history import load_pair_history
    from freqtrade.enums import CandleType

    from freqtrade_opt_plugin.offline.datagen import FUNDING_INTERVAL_HOURS, write_pair_data

    pair = "ETH/USDT:USDT"
    first = write_pair_data(tmp_path / "a", [pair], days=2, seed=3, trading_mode="futures")
    again = write_pair_data(tmp_path / "b", [pair], days=2, seed=3, trading_mode="futures")
    names = sorted(p.name for p in (tmp_path / "a" / "futures").iterdir())
    assert names == ["ETH_USDT_USDT-1h-funding_rate.feather", "ETH_USDT_USDT-1h-mark.feather",
                     "ETH_USDT_USDT-5m-futures.feather"]
    for name in names:
        assert (tmp_path / "a" / "futures" / name).read_bytes() == \
            (tmp_path / "b" / "futures" / name).read_bytes()
    assert first[0].path == tmp_path / "a" / "futures" / "ETH_USDT_USDT-5m-futures.feather"
    assert first[0].path.name == again[0].path.name

    load = dict(datadir=tmp_path / "a", timerange=TimeRange(), fill_up_missing=False)
    candles = load_pair_history(pair, "5m", candle_type=CandleType.FUTURES, **load)
    mark = load_pair_history(pair, "1h", candle_type=CandleType.MARK, **load)
    funding = load_pair_history(pair, "1h", candle_type=CandleType.FUNDING_RATE, **load)
    assert len(candles) == first[0].candles
    assert mark["date"].iloc[0] == candles["date"].iloc[0].floor("1h")
    assert (mark["date"].dt.minute == 0).all()
    hours = funding["date"].diff().dropna()
    assert (hours == pd.Timedelta(hours=FUNDING_INTERVAL_HOURS)).all()
    assert (funding["date"].dt.hour % FUNDING_INTERVAL_HOURS == 0).all()
    assert funding["funding_rate"].between(-0.01, 0.01).all()
    assert (funding["funding_rate"] < 0).any() and (funding["funding_rate"] > 0).any()


def test_spot_and_futures_pairs_are_not_mixed_up(tmp_path):
    from freqtrade_opt_plugin.offline.datagen import write_pair_data
    from freqtrade_opt_plugin.offline.workspace import build_config

    with pytest.raises(ValueError, match="not a futures pair"):
        write_pair_data(tmp_path, ["BTC/USDT"], days=1, trading_mode="futures")
    with pytest.raises(ValueError, match="not a spot pair"):
        write_pair_data(tmp_path, ["BTC/USDT:USDT"], days=1)
    config = build_config(["BTC/USDT:USDT"], trading_mode="futures")
    assert (config["trading_mode"], config["margin_mode"]) == ("futures", "isolated")
    with pytest.raises(ValueError, match="margin_mode"):
        build_config(["BTC/USDT"], margin_mode="cross")
