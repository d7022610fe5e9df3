"""Benchmark: an open trade's candles, Freqtrade's exact per-candle `_check_trade_exit` loop
versus `ExitScanner` (``quiet_until`` + ``skip`` + the exact check on the rows it leaves).

    python benchmarks/bench_exit_scan.py            # 3 pairs x 30 days, 5 repetitions
    python benchmarks/bench_exit_scan.py --quick    # 2 pairs x 10 days, 3 repetitions

Offline: generated candles (``offline.datagen``), SampleStrategy's signals through a real
`Backtesting` (static markets). One trade is opened on every entry signal and followed until
Freqtrade's check returns an exit (at most ``--max-rows`` rows). Both paths are first checked
identical (exit row and full trade state); then each is timed alone, alternating, and the medians
and their ratio are printed per exit configuration.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS: dict[str, dict[str, Any]] = {
    "sample (ROI + exit signal)": {},
    "ROI only": dict(use_exit_signal=False),
    "trailing stop": dict(trailing_stop=True, stoploss=-0.05, minimal_roi={0: 0.5}),
    "trailing +offset": dict(
        trailing_stop=True, trailing_stop_positive=0.01, trailing_stop_positive_offset=0.02,
        trailing_only_offset_is_reached=True, minimal_roi={0: 0.5}, stoploss=-0.08),
}


def build(pairs: int, days: float) -> tuple[Any, dict[str, list]]:
    """A real Backtesting (offline) and its row lists for generated data."""
    from freqtrade_opt_plugin.offline.datagen import default_pairs
    from freqtrade_opt_plugin.offline.workspace import create_workspace, in_process_backtesting

    root = Path(tempfile.mkdtemp(prefix="bench-exit-scan-"))
    workspace = create_workspace(root / "ws", default_pairs(pairs), days=days, seed=11)
    bt = in_process_backtesting(workspace)
    data, _ = bt.load_bt_data()
    rows = bt._get_ohlcv_as_lists(bt.strategy.advise_all_indicators(data))
    return bt, rows


def make_trade(bt: Any, rows: list, k: int) -> Any:
    from freqtrade.persistence.trade_model import LocalTrade

    open_rate = rows[k][1]
    trade = LocalTrade(
        id=1, pair="BTC/USDT", base_currency="BTC", stake_currency="USDT", open_rate=open_rate,
        open_rate_requested=open_rate, open_date=rows[k][0].to_pydatetime(), stake_amount=100.0,
        amount=100.0 / open_rate, amount_requested=100.0 / open_rate, fee_open=bt.fee,
        fee_close=bt.fee, is_open=True, timeframe=5, exchange="binance", is_short=False,
        trading_mode=bt.trading_mode, leverage=1.0, amount_precision=None, price_precision=None,
        precision_mode=None, precision_mode_price=None, contract_size=1.0, orders=[])
    trade.adjust_stop_loss(open_rate, bt.strategy.stoploss, initial=True)
    return trade


def exact(bt: Any, trade: Any, rows: list, k: int, end: int) -> tuple[int | None, int]:
    check = bt._check_trade_exit
    for i in range(k, end):
        if check(trade, rows[i], rows[i][0].to_pydatetime()) is not None:
            return i, end - k
    return None, end - k


def scanned(bt: Any, scanner: Any, pair: Any, trade: Any, rows: list, k: int, end: int
            ) -> tuple[int | None, int]:
    check = bt._check_trade_exit
    checks = 0
    while k < end:
        quiet = scanner.quiet_until(trade, pair, k, limit=end - 1)
        scanner.skip(trade, pair, k, quiet)
        checks += 1
        if check(trade, rows[quiet], rows[quiet][0].to_pydatetime()) is not None:
            return quiet, checks
        k = quiet + 1
    return None, checks


def state(trade: Any) -> str:
    return repr([trade.max_rate, trade.min_rate, trade.stop_loss, trade.initial_stop_loss,
                 trade.is_stop_loss_trailing, trade.exit_reason, trade.close_date,
                 [(o.price, o.amount) for o in trade.orders]])


def measure(bt: Any, rows: dict[str, list], name: str, settings: dict, repeats: int,
            max_rows: int) -> None:
    from freqtrade_opt_plugin.optimizations.fast_loop.exit_scan import ExitScanner, PairArrays

    strategy = bt.strategy
    saved = {key: getattr(strategy, key) for key in settings}
    for key, value in settings.items():
        setattr(strategy, key, value)
    try:
        scanner, reason = ExitScanner.build(bt)
        assert scanner is not None, reason
        arrays = {pair: PairArrays.from_rows(r) for pair, r in rows.items()}
        jobs = [(pair, k, min(len(r), k + max_rows)) for pair, r in rows.items()
                for k in range(len(r) - 1) if r[k][5] == 1]
        candles = checks = exits = 0
        for pair, k, end in jobs:  # identical first
            a, b = make_trade(bt, rows[pair], k), make_trade(bt, rows[pair], k)
            row_a, n = exact(bt, a, rows[pair], k, end)
            row_b, c = scanned(bt, scanner, arrays[pair], b, rows[pair], k, end)
            assert row_a == row_b and state(a) == state(b), (pair, k, row_a, row_b)
            candles += (row_a + 1 - k) if row_a is not None else n
            checks += c
            exits += row_a is not None

        def run_exact() -> None:
            for pair, k, end in jobs:
                exact(bt, make_trade(bt, rows[pair], k), rows[pair], k, end)

        def run_scanned() -> None:
            fresh = ExitScanner.build(bt)[0]
            for pair, k, end in jobs:
                scanned(bt, fresh, arrays[pair], make_trade(bt, rows[pair], k), rows[pair], k,
                        end)

        def run_trades_only() -> None:
            for pair, k, _ in jobs:
                make_trade(bt, rows[pair], k)

        times: dict[str, list[float]] = {"exact": [], "scan": [], "trades": []}
        for _ in range(repeats):
            for label, func in (("exact", run_exact), ("scan", run_scanned),
                                ("trades", run_trades_only)):
                start = time.perf_counter()
                func()
                times[label].append(time.perf_counter() - start)
        base = statistics.median(times["trades"])
        exact_s = statistics.median(times["exact"]) - base
        scan_s = statistics.median(times["scan"]) - base
        print(f"{name:28s} trades {len(jobs):4d} (exits {exits:4d})  candles {candles:7d}  "
              f"exact checks with scan {checks:6d} ({checks / max(candles, 1):6.1%})\n"
              f"{'':28s} exact loop {exact_s * 1e3:9.1f} ms  scan {scan_s * 1e3:8.1f} ms  "
              f"ratio {scan_s / exact_s:6.3f} (x{exact_s / scan_s:5.1f})  "
              f"[medians of {repeats}; trade construction {base * 1e3:.1f} ms subtracted]")
    finally:
        for key, value in saved.items():
            setattr(strategy, key, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--days", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--max-rows", type=int, default=2000)
    args = parser.parse_args(argv)
    pairs = args.pairs or (2 if args.quick else 3)
    days = args.days or (10 if args.quick else 30)
    repeats = args.repeats or (3 if args.quick else 5)
    import logging

    logging.disable(logging.INFO)
    bt, rows = build(pairs, days)
    print(f"exit scan: {pairs} pairs x {days:g} days ({sum(map(len, rows.values()))} candles)")
    for name, settings in CONFIGS.items():
        measure(bt, rows, name, settings, repeats, args.max_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
