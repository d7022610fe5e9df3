"""Benchmark: Freqtrade's `LocalTrade` profit math against `trade_math`, in one process.

1. Per method (`calc_profit_ratio`, `calc_close_trade_value`, `_calc_open_trade_value`) on the
   trades of tests/data/backtest-result.json, each at its open, close, min and max rate and at 16
   rates in between: Freqtrade's original, the replacement called directly, the replacement
   behind its hot Router (the lean layer trade_math registers, `hot=True`) and behind a standard
   Router (`hot=False`), and the original behind each (level below aggressive, Router bound).
   Two alternative approaches are timed for the close value: the replacement with the parse memo
   emptied before every call (every operand parsed; the other variants run with a warm memo,
   after an untimed pass), and Python's `decimal` (exact context, Inexact trapped; spot only, not
   used by the plugin). Every variant is first checked bit for bit against the original on all
   inputs. Medians of CPU time per call over alternating repeats.
2. A whole `Backtesting.backtest` in this process (SampleStrategy, generated offline candles,
   10 pairs x 90 days by default): stock; what activation binds at a level below aggressive (the
   originals: hot targets that are off are not routed) and at aggressive (the hot Routers); hot
   and standard Routers bound while off; the replacements set directly on `LocalTrade` and behind
   standard Routers; alternating. The trades of every run are checked identical (every column,
   by repr).

    python benchmarks/bench_trade_math.py [--quick] [--repeat N] [--runs N] [--pairs N --days N]
        [--workspace DIR (an existing workspace, read only)] [--skip-methods] [--skip-backtest]
        [--variants LABEL ...]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import decimal
import inspect
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import freqtrade_opt_plugin


freqtrade_opt_plugin.deactivate()  # the originals, unrouted: this script installs what it times

from freqtrade.data.btanalysis import load_backtest_data  # noqa: E402
from freqtrade.enums import TradingMode  # noqa: E402
from freqtrade.persistence.trade_model import LocalTrade  # noqa: E402

from freqtrade_opt_plugin.flags import Flags  # noqa: E402
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings  # noqa: E402
from freqtrade_opt_plugin.optimizations.trade_math import OPTIMIZATIONS, exact, methods  # noqa: E402
from freqtrade_opt_plugin.registry import OptimizationLevel  # noqa: E402
from freqtrade_opt_plugin.router import make_router  # noqa: E402
from freqtrade_opt_plugin.settings import Settings  # noqa: E402


EXPORT = Path(__file__).resolve().parents[1] / "tests" / "data" / "backtest-result.json"
NAMES = ("calc_profit_ratio", "calc_close_trade_value", "_calc_open_trade_value")
ORIGINAL = {name: inspect.getattr_static(LocalTrade, name) for name in NAMES}
BUILD = {"calc_profit_ratio": methods.build_profit_ratio,
         "calc_close_trade_value": methods.build_close_trade_value,
         "_calc_open_trade_value": methods.build_open_trade_value}
OPT = {opt.target.rpartition(".")[2]: opt for opt in OPTIMIZATIONS}


def routed(name: str, level: OptimizationLevel, hot: bool = True) -> Callable:
    """The Router activation installs (`hot`: the lean layer trade_math registers; False: the
    standard layer, for comparison). Bound even when off (what a target gets while another
    candidate on it is on)."""
    opt = dataclasses.replace(OPT[name], hot=hot)
    flags = Flags([opt], Settings(level=level))
    return make_router(opt, ORIGINAL[name], flags, Monitor(MonitorSettings(persist=False)))


def as_activated(name: str, level: OptimizationLevel) -> Callable:
    """What activation binds at a hot target: its Router if the optimization is on at `level`,
    else the original itself (`activation._bind_hot`)."""
    router = routed(name, level)
    return router if level >= OPT[name].tier else ORIGINAL[name]


def install(functions: dict[str, Callable]) -> None:
    for name, func in functions.items():
        setattr(LocalTrade, name, func)


# -- 1. per method ---------------------------------------------------------------------------------
def export_cases() -> list[tuple[LocalTrade, float]]:
    frame = load_backtest_data(EXPORT)
    cases = []
    for row in frame.itertuples():
        trade = LocalTrade(pair=row.pair, stake_amount=row.stake_amount, amount=row.amount,
                           open_rate=row.open_rate, fee_open=row.fee_open, fee_close=row.fee_close,
                           is_short=bool(row.is_short), leverage=float(row.leverage),
                           trading_mode=TradingMode.SPOT, exchange="binance",
                           open_date=datetime(2024, 1, 1, tzinfo=UTC))
        low, high = row.min_rate, row.max_rate
        rates = [row.open_rate, row.close_rate, low, high]
        rates += [low + (high - low) * i / 17 for i in range(1, 17)]
        cases += [(trade, rate) for rate in rates]
    return cases


_DECIMAL = decimal.Context(prec=200, traps=[decimal.Inexact, decimal.InvalidOperation])


def decimal_close_value(self, rate, amount=None):
    """Spot-only `calc_close_trade_value` with `decimal` (an approach measured, not used)."""
    if rate is None and not self.close_rate:
        return 0.0
    amount1 = decimal.Decimal(str(amount or self.amount))
    value = _DECIMAL.multiply(amount1, decimal.Decimal(str(rate)))
    fees = _DECIMAL.multiply(value, decimal.Decimal(str(self.fee_close or 0.0)))
    total = _DECIMAL.add(value, fees) if self.is_short else _DECIMAL.subtract(value, fees)
    return float(total)


def one_entry_memo(build: Callable) -> Callable:
    """The replacement with the float-parse memo emptied before every call."""
    replacement = build

    def call(*args):
        if len(exact._PARSED) > 1:
            exact._PARSED.clear()
        return replacement(*args)

    return call


def per_call_ns(func: Callable, calls: list[tuple]) -> float:
    """CPU time of this thread per call (insensitive to other processes on a busy machine)."""
    start = time.thread_time_ns()
    for args in calls:
        func(*args)
    return (time.thread_time_ns() - start) / len(calls)


def method_variants(name: str) -> dict[str, Callable]:
    built = BUILD[name](ORIGINAL[name])
    variants = {
        "original": ORIGINAL[name],
        "replacement": built,
        "replacement+hot Router": routed(name, OptimizationLevel.AGGRESSIVE),
        "replacement+std Router": routed(name, OptimizationLevel.AGGRESSIVE, hot=False),
        "original+hot Router": routed(name, OptimizationLevel.DISABLED),
        "original+std Router": routed(name, OptimizationLevel.DISABLED, hot=False),
    }
    if name == "calc_close_trade_value":
        variants["repl. no parse memo"] = one_entry_memo(built)
        variants["decimal (approach)"] = decimal_close_value
    return variants


def bench_methods(repeat: int, limit: int | None) -> None:
    cases = export_cases()[:limit]
    print(f"== per call: {len(cases)} (trade, rate) pairs from {EXPORT.name}, "
          f"median of {repeat} alternating repeats ==")
    print(f"{'method':24s} {'variant':20s} {'CPU ns/call':>11s} {'vs original':>12s}")
    for name in NAMES:
        if name == "_calc_open_trade_value":
            calls = [(trade, trade.amount, rate) for trade, rate in cases]
        else:
            calls = [(trade, rate) for trade, rate in cases]
        variants = method_variants(name)
        for label, func in variants.items():
            for args in calls:
                got, want = func(*args), ORIGINAL[name](*args)
                assert type(got) is type(want) and got.hex() == want.hex(), (label, args)
        samples: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(repeat):
            for label, func in variants.items():
                per_call_ns(func, calls)  # untimed pass: warm caches (and the parse memo)
                samples[label].append(per_call_ns(func, calls))
        base = statistics.median(samples["original"])
        for label in variants:
            median = statistics.median(samples[label])
            print(f"{name:24s} {label:20s} {median:11.0f} {base / median:11.2f}x")


# -- 2. a whole backtest ---------------------------------------------------------------------------
def prepare_backtest(workspace_root: Path | None, pairs: int, days: int, tmp: Path):
    from freqtrade.configuration import Configuration
    from freqtrade.data import history
    from freqtrade.data.converter import trim_dataframes
    from freqtrade.enums import RunMode
    from freqtrade.optimize.backtesting import Backtesting

    from freqtrade_opt_plugin.offline.datagen import DEFAULT_PAIRS
    from freqtrade_opt_plugin.offline.markets import install_static_markets
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    if workspace_root is None:
        workspace = create_workspace(tmp / "ws", DEFAULT_PAIRS[:pairs], days=days, seed=42)
        config_path, user_data = workspace.config_path, workspace.user_data
    else:
        user_data = workspace_root / "user_data"
        config_path = user_data / "config.json"
    install_static_markets()
    args = {"config": [str(config_path)], "user_data_dir": str(user_data),
            "strategy": "SampleStrategy", "export": "none", "timeframe": "5m"}
    config = Configuration(args, RunMode.BACKTEST).get_config()
    backtesting = Backtesting(config)
    data, timerange = backtesting.load_bt_data()
    backtesting._set_strategy(backtesting.strategylist[0])
    preprocessed = backtesting.strategy.advise_all_indicators(data)
    trimmed = trim_dataframes(preprocessed, timerange, backtesting.required_startup)
    start, end = history.get_timerange(trimmed)
    return backtesting, preprocessed, start, end


def bench_backtest(args: argparse.Namespace) -> None:
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        backtesting, preprocessed, start, end = prepare_backtest(
            args.workspace, args.pairs, args.days, Path(tmp))
        off, on = OptimizationLevel.STANDARD, OptimizationLevel.AGGRESSIVE
        variants = {
            "stock": dict(ORIGINAL),
            "activated, off": {name: as_activated(name, off) for name in NAMES},
            "hot Routers, off": {name: routed(name, off) for name in NAMES},
            "std Routers, off": {name: routed(name, off, hot=False) for name in NAMES},
            "replacements": {name: BUILD[name](ORIGINAL[name]) for name in NAMES},
            "activated, on": {name: as_activated(name, on) for name in NAMES},
            "std Routers, on": {name: routed(name, on, hot=False) for name in NAMES},
        }
        if args.variants:
            variants = {label: variants[label] for label in ["stock", *args.variants]}
        times: dict[str, list[float]] = {label: [] for label in variants}
        reference = None
        for _ in range(args.runs):
            for label, functions in variants.items():
                install(functions)
                processed = copy.deepcopy(preprocessed)
                started = time.thread_time()
                result = backtesting.backtest(processed=processed, start_date=start, end_date=end)
                times[label].append(time.thread_time() - started)
                trades = result["results"]
                if reference is None:
                    reference = trades
                else:
                    assert trades.equals(reference), f"{label}: trades differ from stock"
                    for column in trades.columns:  # exact floats, not just equal frames
                        assert list(map(repr, trades[column])) == list(
                            map(repr, reference[column])), (label, column)
        install(ORIGINAL)
    logging.disable(logging.NOTSET)
    pairs = args.pairs if args.workspace is None else f"workspace {args.workspace}"
    print(f"\n== Backtesting.backtest in process ({pairs} pairs x {args.days} days, "
          f"SampleStrategy, {len(reference)} trades, identical in every run), "
          f"CPU seconds, median of {args.runs} ==")
    base = statistics.median(times["stock"])
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:22s} {median:7.2f} s  {base / median:5.2f}x  "
              f"(saved {base - median:5.2f} s)")
    print("activated: what activation binds (hot Routers; the originals while off); "
          "hot/std Routers: bound even when off (hot: trade_math's lean layer, std: hot=False)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--repeat", type=int, default=9, help="per-method repeats")
    parser.add_argument("--runs", type=int, default=3, help="whole-backtest runs per variant")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--workspace", type=Path, help="existing workspace root (read only)")
    parser.add_argument("--skip-backtest", action="store_true")
    parser.add_argument("--skip-methods", action="store_true")
    parser.add_argument("--variants", nargs="*", help="whole-backtest variants besides stock")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.runs, args.pairs, args.days = 3, 1, 3, 20
    if not args.skip_methods:
        bench_methods(args.repeat, 2000 if args.quick else None)
    if not args.skip_backtest:
        bench_backtest(args)


if __name__ == "__main__":
    main()
