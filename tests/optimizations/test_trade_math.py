"""Exactness of `trade_math` against Freqtrade's `LocalTrade` methods and ccxt's `Precise`.

Every comparison is bit for bit: the same type and the same ``float.hex()`` (so the sign of zero
counts), or the same exception type from both.
"""

from __future__ import annotations

import inspect
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from ccxt.base.precise import Precise
from freqtrade.data.btanalysis import load_backtest_data
from freqtrade.enums import TradingMode
from freqtrade.persistence import Trade
from freqtrade.persistence.trade_model import LocalTrade
from freqtrade.util import FtPrecise
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from freqtrade_opt_plugin.optimizations import trade_math
from freqtrade_opt_plugin.optimizations.trade_math import exact, fingerprints, methods
from freqtrade_opt_plugin.registry import fingerprint


NAMES = ("calc_profit_ratio", "calc_close_trade_value", "_calc_open_trade_value")
ORIGINAL = {name: inspect.unwrap(inspect.getattr_static(LocalTrade, name)) for name in NAMES}
FAST = {
    "calc_profit_ratio": methods.build_profit_ratio(ORIGINAL["calc_profit_ratio"]),
    "calc_close_trade_value": methods.build_close_trade_value(ORIGINAL["calc_close_trade_value"]),
    "_calc_open_trade_value": methods.build_open_trade_value(ORIGINAL["_calc_open_trade_value"]),
}
BACKTEST_RESULT = Path(__file__).parents[1] / "data" / "backtest-result.json"
OPEN_DATE = datetime(2024, 3, 1, 10, 5, tzinfo=UTC)
MODES = (TradingMode.SPOT, TradingMode.MARGIN, TradingMode.FUTURES)


def outcome(func, *args):
    try:
        value = func(*args)
    except Exception as exc:
        return ("raises", type(exc))
    return (type(value), value.hex() if isinstance(value, float) else value)


def assert_same(name, trade, *args):
    expected = outcome(ORIGINAL[name], trade, *args)
    got = outcome(FAST[name], trade, *args)
    assert got == expected, (name, args, vars_of(trade))
    return expected


def vars_of(trade) -> dict:
    keys = ("amount", "open_rate", "fee_open", "fee_close", "is_short", "leverage",
            "trading_mode", "exchange", "interest_rate", "funding_fees", "close_rate",
            "open_trade_value", "open_date", "close_date")
    return {key: getattr(trade, key) for key in keys}


def make_trade(cls=LocalTrade, **fields) -> LocalTrade:
    values = dict(pair="ETH/USDT", stake_amount=10.0, amount=1.0, open_rate=1.0, fee_open=0.001,
                  fee_close=0.001, is_short=False, leverage=1.0, trading_mode=TradingMode.SPOT,
                  exchange="binance", open_date=OPEN_DATE, close_date=None, interest_rate=0.0,
                  funding_fees=0.0)
    trade = cls(**values)  # __init__ computes the open value: the fields below may not allow it
    for key, value in fields.items():
        setattr(trade, key, value)
    try:
        trade.recalc_open_trade_value()
    except Exception:  # e.g. fee_open None: the methods must then raise alike
        trade.open_trade_value = fields.get("open_trade_value", 0.0)
    return trade


# --- exact: the Precise arithmetic ---------------------------------------------------------------

def test_sources_of_every_reproduced_function_are_the_verified_ones():
    assert fingerprints.helper_sources_verified() is None
    for name, versions in fingerprints.TARGETS.items():
        assert fingerprint(ORIGINAL[name]) == versions["2026.9"]
    for name, accepted in fingerprints.TRADE_HELPERS.items():
        assert fingerprint(inspect.unwrap(getattr(LocalTrade, name))) in accepted


@given(st.integers(min_value=-(10**60), max_value=10**60), st.integers(-60, 400))
@example(-1, 400)
@example(-5, 324)  # rounds to -0.0 ... or the smallest subnormal
@example(25, 325)
@example(17976931348623159, -292)  # beyond the double range: inf through the text route
@example(-(2**1024), 0)
@example(0, 5)
@settings(max_examples=600, deadline=None)
def test_to_float_is_float_of_the_precise_text(integer, decimals):
    expected = float(str(Precise(integer, decimals)))
    assert exact.to_float(integer, decimals).hex() == expected.hex()


def _precise_pair(number):
    precise = FtPrecise(number)
    return precise.integer, precise.decimals


@given(st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False).map(np.float64),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(np.float32),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
))
@example(0.0)
@example(-0.0)
@example(1e-05)
@example(1.5e16)
@settings(max_examples=600, deadline=None)
def test_parse_is_the_precise_of_any_operand(number):
    assert exact.parse(number) == _precise_pair(number)
    assert exact.parse(number) == _precise_pair(number)  # again: now from the memo


@pytest.mark.parametrize("text", ["0.00498", "12", "1e-7", "-3.50", "0"])
def test_parse_of_an_ftprecise_operand(text):
    """Freqtrade passes an FtPrecise as amount after a position change: str() of it is parsed."""
    assert exact.parse(FtPrecise(text)) == _precise_pair(FtPrecise(text))


def test_parse_memo_is_keyed_by_type_and_value():
    exact.clear_cache()
    assert exact.parse(0.10000000149011612) == (10000000149011612, 17)
    # equal as dict keys, different text: must not come from the float's memo entry
    assert exact.parse(np.float32(0.1)) == _precise_pair(np.float32(0.1)) == (1, 1)
    assert exact.parse(-0.0) == exact.parse(0.0) == _precise_pair(-0.0) == (0, 1)
    assert exact.parse(1) == (1, 0) and exact.parse(1.0) == (10, 1)


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), "abc", True])
def test_parse_rejects_what_precise_rejects(bad):
    with pytest.raises(ValueError):
        FtPrecise(bad)
    with pytest.raises(ValueError):
        exact.parse(bad)


@given(st.tuples(st.integers(-(10**40), 10**40), st.integers(-30, 60)),
       st.tuples(st.integers(-(10**40), 10**40), st.integers(-30, 60)))
@settings(max_examples=500, deadline=None)
def test_pair_operations_are_precise_operations(a, b):
    pa, pb = Precise(*a), Precise(*b)
    for ours, theirs in ((exact.mul, pa.mul), (exact.add, pa.add), (exact.sub, pa.sub)):
        result = theirs(pb)
        assert ours(a, b) == (result.integer, result.decimals)


# --- the trade methods over the input domain ------------------------------------------------------

def decimals(low: float, high: float, digits: int = 16):
    """Floats with up to `digits` significant digits in [low, high], plus arbitrary doubles."""
    low_exp, high_exp = int(np.floor(np.log10(low))), int(np.ceil(np.log10(high)))
    text = st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 10**digits - 1),
                     st.integers(low_exp - digits, high_exp))
    return st.one_of(text.filter(lambda x: low <= x <= high),
                     st.floats(min_value=low, max_value=high))


RATES = st.one_of(decimals(1e-12, 1e9), st.sampled_from([0.0, -0.0, -1.5, 1, 7, 3e-7]),
                  decimals(1e-12, 1e9).map(np.float64))
AMOUNTS = st.one_of(decimals(1e-8, 1e9), st.sampled_from([0.0, 1, -2.5, 1e-30, 123456789012]))
FEES = st.one_of(st.none(), st.just(0.0), st.just(0), decimals(1e-6, 0.1))
LEVERAGE = st.one_of(st.just(1.0), st.integers(1, 125), decimals(1.0, 125.0, digits=4))
FUNDING = st.one_of(st.none(), st.just(0.0), decimals(1e-8, 1e4),
                    decimals(1e-8, 1e4).map(lambda x: -x))


@st.composite
def trades(draw):
    mode = draw(st.sampled_from(MODES + ("spot", "futures", None)))
    hours = draw(st.sampled_from([0, 0.5, 1, 3.99, 4, 25, 1000.25]))
    return make_trade(
        amount=draw(AMOUNTS.filter(bool)),
        open_rate=draw(decimals(1e-12, 1e9)),
        fee_open=draw(FEES),
        fee_close=draw(FEES),
        is_short=draw(st.booleans()),
        leverage=draw(LEVERAGE),
        trading_mode=mode,
        exchange=draw(st.sampled_from(["binance", "kraken", "Binance"])),
        interest_rate=draw(st.one_of(st.just(0.0), decimals(1e-6, 0.01))),
        funding_fees=draw(FUNDING),
        close_date=OPEN_DATE + timedelta(hours=hours),
        close_rate=draw(st.one_of(st.none(), decimals(1e-12, 1e9))),
    )


@given(trades(), RATES, st.one_of(st.none(), AMOUNTS), st.one_of(st.none(), RATES))
@example(make_trade(), None, None, None)
@example(make_trade(close_rate=2.0), None, None, None)
@example(make_trade(fee_close=None), 1.0, None, None)
@example(make_trade(trading_mode="options"), 1.0, None, None)
@example(make_trade(trading_mode=TradingMode.MARGIN, is_short=True, leverage=3.0,
                    interest_rate=0.0005, close_date=OPEN_DATE + timedelta(hours=5)),
         1.1, None, None)
@example(make_trade(trading_mode=TradingMode.MARGIN, leverage=2.0, interest_rate=0.0005,
                    exchange="kraken", close_date=OPEN_DATE + timedelta(hours=5)),
         0.9, 2.0, 1.0)
@example(make_trade(trading_mode=TradingMode.FUTURES, is_short=True, funding_fees=-0.25),
         1.05, None, None)
@example(make_trade(amount=2.0, open_rate=0.5, fee_open=0.0), 0.0, 0.0, 0.0)
@example(make_trade(fee_open=None), 1.0, 1.0, 1.0)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_methods_equal_the_originals_over_the_input_domain(trade, rate, amount, open_rate):
    assert_same("calc_close_trade_value", trade, rate, amount)
    assert_same("calc_profit_ratio", trade, rate, amount, open_rate)
    assert_same("calc_profit_ratio", trade, rate)
    assert_same("_calc_open_trade_value", trade, amount or trade.amount, rate)


def test_seeded_sweep_of_realistic_trades():
    """12k random trades and rates (the shapes a backtest sees), every mode, both sides."""
    rng = random.Random(20260914)

    def sig(low_exp: int, high_exp: int) -> float:
        digits = rng.randint(1, 16)
        return float(f"{rng.randint(1, 10**digits - 1)}e{rng.randint(low_exp, high_exp) - digits}")

    for i in range(12_000):
        mode = MODES[i % 3]
        trade = make_trade(
            amount=sig(-8, 9), open_rate=sig(-12, 9), fee_open=rng.choice([0.001, 0.0005, 0.0]),
            fee_close=rng.choice([0.001, 0.00075, None]), is_short=bool(i & 4),
            leverage=rng.choice([1.0, 2.0, 3.5, 10, 125.0]), trading_mode=mode,
            interest_rate=rng.choice([0.0, 0.0005]), funding_fees=rng.choice([0.0, -0.0123, 1.5]),
            close_date=OPEN_DATE + timedelta(minutes=5 * rng.randint(0, 5000)))
        rate = trade.open_rate * rng.uniform(0.5, 1.5)
        assert_same("calc_profit_ratio", trade, rate)
        assert_same("calc_close_trade_value", trade, sig(-12, 9))


def test_real_trades_of_a_backtest_export():
    frame = load_backtest_data(BACKTEST_RESULT)
    assert len(frame) > 100
    checked = 0
    for row in frame.itertuples():
        trade = make_trade(amount=row.amount, open_rate=row.open_rate, fee_open=row.fee_open,
                           fee_close=row.fee_close, is_short=bool(row.is_short),
                           leverage=float(row.leverage), trading_mode=TradingMode.SPOT,
                           close_date=row.close_date.to_pydatetime())
        for rate in (row.close_rate, row.open_rate, row.min_rate, row.max_rate):
            assert_same("calc_profit_ratio", trade, rate)
            assert_same("calc_close_trade_value", trade, rate)
            assert_same("calc_profit_ratio", trade, rate, row.amount / 2, row.open_rate)
            assert_same("_calc_open_trade_value", trade, row.amount, rate)
            checked += 1
    assert checked == 4 * len(frame)


# --- who is served, who goes to the original -----------------------------------------------------

class OverridingTrade(LocalTrade):
    def _calc_base_close(self, amount, rate, fee):
        return super()._calc_base_close(amount, rate, fee) * FtPrecise(2)


def test_a_subclass_overriding_an_inlined_helper_gets_the_original():
    trade = make_trade(OverridingTrade, amount=3.0, open_rate=1.0)
    for name in ("calc_profit_ratio", "calc_close_trade_value"):
        expected = assert_same(name, trade, 1.2)
        assert expected == outcome(getattr(trade, name), 1.2)  # the override is honoured
    assert not methods._inlinable(OverridingTrade)
    assert methods._inlinable(LocalTrade)


def test_sqlalchemy_trade_of_live_and_dry_runs_is_served_exactly():
    trade = make_trade(Trade, amount=0.123, open_rate=25000.5, fee_open=0.001, fee_close=0.001,
                       is_short=True, leverage=5.0, trading_mode=TradingMode.FUTURES,
                       funding_fees=-1.25)
    assert methods._inlinable(Trade)
    for rate in (24000.0, 26000.25, 25000.5):
        assert_same("calc_profit_ratio", trade, rate)
        assert_same("calc_close_trade_value", trade, rate)


def test_a_foreign_patch_of_a_helper_is_not_inlined(monkeypatch):
    import functools

    original = LocalTrade._calc_base_close

    @functools.wraps(original)  # even with __wrapped__ pointing at Freqtrade's function
    def patched(self, amount, rate, fee):
        return original(self, amount, rate, fee) + FtPrecise(1)

    monkeypatch.setattr(LocalTrade, "_calc_base_close", patched)
    trade = make_trade(amount=2.0, open_rate=1.0)
    assert not methods._inlinable(LocalTrade)
    assert outcome(FAST["calc_close_trade_value"], trade, 1.0) == outcome(
        ORIGINAL["calc_close_trade_value"], trade, 1.0)
    assert FAST["calc_close_trade_value"](trade, 1.0) == pytest.approx(2.998)


def test_replacements_installed_as_helpers_keep_the_fast_path(monkeypatch):
    for name in ("calc_close_trade_value", "_calc_open_trade_value"):
        monkeypatch.setattr(LocalTrade, name, FAST[name])
    assert methods._inlinable(LocalTrade)
    trade = make_trade(amount=0.37, open_rate=101.5)
    assert_same("calc_profit_ratio", trade, 99.25, 0.2, 100.0)


def test_registered_factories_build_in_front_of_wrapped():
    trade = make_trade(amount=1.25, open_rate=3.5, is_short=True, leverage=2.0,
                       trading_mode=TradingMode.FUTURES, funding_fees=0.01)
    for opt in trade_math.OPTIMIZATIONS:
        name = opt.target.rpartition(".")[2]
        args = (trade, 1.25, 3.25) if name == "_calc_open_trade_value" else (trade, 3.25)
        assert opt.replacement is None and opt.factory is not None
        assert outcome(opt.build(ORIGINAL[name]), *args) == outcome(ORIGINAL[name], *args)


def test_bench_cases_run_both_paths_identically():
    from freqtrade_opt_plugin.commands.microbench import run_case

    for opt in trade_math.OPTIMIZATIONS:
        result = run_case(opt, opt.bench_case, repeat=3)
        assert result["difference"] is None, result


def test_differing_ccxt_sources_leave_the_originals_in_place(monkeypatch):
    fingerprints.helper_sources_verified.cache_clear()
    monkeypatch.setitem(fingerprints.PRECISE_HELPERS, ("ccxt.base.precise", "Precise.mul"),
                        frozenset({"0000000000000000"}))
    try:
        original = ORIGINAL["calc_profit_ratio"]
        assert methods.build_profit_ratio(original) is original
    finally:
        fingerprints.helper_sources_verified.cache_clear()


def test_registered_as_aggressive_pure_optimizations_of_each_target():
    by_target = {opt.target.rpartition(".")[2]: opt for opt in trade_math.OPTIMIZATIONS}
    assert set(by_target) == set(NAMES)
    for name, opt in by_target.items():
        assert opt.tier.name == "AGGRESSIVE" and not opt.mutates_arguments and not opt.shadow
        assert opt.hot and opt.verify_case is not None and opt.bench_case is not None
        assert opt.fingerprints == fingerprints.TARGETS[name]
        assert opt.target == f"freqtrade.persistence.trade_model:LocalTrade.{name}"


def test_verify_checks_each_method_on_the_users_trades():
    import dataclasses

    from freqtrade_opt_plugin.commands import verify

    frame = load_backtest_data(BACKTEST_RESULT)
    pairs = sorted(frame["pair"].unique())[:2]
    inputs = verify.Inputs(config={"trading_mode": "spot", "exchange": {"name": "binance"}},
                           pairs=pairs, timeframe="5m", candles={}, timerange=None, startup=0,
                           trades=frame[frame["pair"].isin(pairs)], trades_source="export")
    report = verify.verify(inputs, trade_math.OPTIMIZATIONS)
    assert {c.status for c in report.checks} == {verify.EXACT}
    assert {c.pair for c in report.checks} == {verify.ALL_PAIRS, *pairs}

    opt = trade_math.OPTIMIZATIONS[0]
    wrong = dataclasses.replace(opt, factory=lambda wrapped: lambda self, rate, *a: 0.1)
    report = verify.verify(inputs, [wrong])
    assert {c.status for c in report.checks} == {verify.DIFFERENT}
    assert "instead of" in report.checks[0].detail
