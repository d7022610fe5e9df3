"""``freqtrade-opt verify``: each registered optimization against the original, on your data.

For each registered optimization -- also one whose target's source no longer matches a verified
fingerprint, so a drifted Freqtrade can be checked on demand -- the original (``inspect.unwrap`` of
the target, which skips an installed Router) and the replacement (``opt.build(original)``: its
factory with the original as `wrapped`, never through a Router) run side by side on fresh copies
of the same inputs. Compared exactly with `equality.first_difference`: the returned object and
every argument after the call.

What each optimization is checked on is its own `registry.VerifyCase` (``opt.verify_case``; an
optimization without one uses the case of another on the same target): a generator that gets a
`Subject` (the optimization, the original, the replacement, and `Subject.compare`, which runs both
on deep copies of the same arguments and compares result and arguments) and the `Inputs`, loaded
from the user's own Freqtrade config (``Configuration``, as ``freqtrade backtesting`` reads it)
and downloaded data (``history.load_data`` with their datadir, timeframe, timerange, pairs and the
strategy's startup candles): the candles, the strategy, and the trades of a quick backtest of the
same data (a real ``Backtesting(config)``: needs the exchange's markets, so normally the network),
else of the most recent result in the backtest results directory (``Inputs.trades_problem``
says why there are none). An optimization with no case at all is reported as skipped.

The command deactivates the plugin in its own process first, so the quick backtest is stock
Freqtrade and nothing is recorded in the telemetry store. Exit code 1 on any difference, 2 when
nothing could be checked (bad config, no data), else 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from freqtrade_opt_plugin.checks import (
    ALL_PAIRS,
    DIFFERENT,
    EXACT,
    SKIPPED,
    Check,
    Subject,
    resolve_original,
)
from freqtrade_opt_plugin.registry import (
    Optimization,
    VerifyCase,
    case_of,
    fingerprint,
    verified_versions,
)


logger = logging.getLogger(__name__)



# --- results -------------------------------------------------------------------------------------

@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # optimization -> source status
    trades_source: str = ""

    @property
    def differences(self) -> list[Check]:
        return [c for c in self.checks if c.status == DIFFERENT]

    @property
    def exact(self) -> list[Check]:
        return [c for c in self.checks if c.status == EXACT]

    @property
    def exit_code(self) -> int:
        if self.differences:
            return 1
        return 0 if self.exact else 2

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "exact": len(self.exact),
            "different": len(self.differences),
            "skipped": sum(c.status == SKIPPED for c in self.checks),
            "trades_source": self.trades_source,
            "sources": self.sources,
            "notes": self.notes,
            "checks": [asdict(c) for c in self.checks],
        }


# --- inputs --------------------------------------------------------------------------------------

@dataclass
class Inputs:
    """Everything the checks run on. `candles` are as loaded and never modified."""

    config: dict[str, Any]
    pairs: list[str]
    timeframe: str
    candles: dict[str, pd.DataFrame]
    timerange: Any  # freqtrade.configuration.TimeRange, adjusted for the startup candles
    startup: int
    strategy: Any = None  # IStrategy, or None (see strategy_problem)
    strategy_problem: str | None = None
    trades: pd.DataFrame | None = None
    trades_source: str = ""
    trades_timeframe: str | None = None  # of a loaded result (else `timeframe`)
    missing_pairs: list[str] = field(default_factory=list)  # asked for, but no candles
    starting_balance: float = 0.0
    stock_frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # after stock tick size

    def trades_problem(self) -> str | None:
        """Why there are no trades to check on, or None."""
        if self.trades is None:
            return f"no trades to check on: {self.trades_source}"
        if self.trades.empty:
            return f"no trades in {self.trades_source}"
        return None

    def trade_scopes(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """All trades (`ALL_PAIRS`), then each pair's trades (pairs with trades only)."""
        trades = self.trades
        assert trades is not None
        yield ALL_PAIRS, trades
        for pair in self.pairs:
            subset = trades[trades["pair"] == pair]
            if len(subset):
                yield pair, subset


def load_config(args: dict[str, Any]) -> dict[str, Any]:
    """The user's config as ``freqtrade backtesting`` builds it (files, env, arguments)."""
    from freqtrade.configuration import Configuration
    from freqtrade.enums import RunMode

    return Configuration(args, RunMode.BACKTEST).get_config()


def _load_strategy(config: dict[str, Any]) -> tuple[Any, str | None]:
    if not config.get("strategy"):
        return None, "no strategy in the config (use --strategy)"
    from freqtrade.resolvers import StrategyResolver

    try:
        return StrategyResolver.load_strategy(config), None
    except Exception as exc:
        return None, f"strategy '{config['strategy']}' could not be loaded: {exc}"


def _pairs(config: dict[str, Any], timeframe: str) -> list[str]:
    """The whitelist (or --pairs), wildcards expanded against the pairs with data on disk."""
    from freqtrade.data.history import get_datahandler
    from freqtrade.enums import CandleType
    from freqtrade.plugins.pairlist.pairlist_helpers import expand_pairlist

    wanted = list(config.get("exchange", {}).get("pair_whitelist") or [])
    if not any(any(ch in pair for ch in "*.[]()+?") for pair in wanted):
        return wanted
    handler = get_datahandler(Path(config["datadir"]), config.get("dataformat_ohlcv", "feather"))
    candle_type = config.get("candle_type_def", CandleType.SPOT)
    on_disk = handler.ohlcv_get_pairs(Path(config["datadir"]), timeframe, candle_type)
    return expand_pairlist(wanted, on_disk)


def prepare_inputs(config: dict[str, Any], *, quick_backtest: bool = True) -> Inputs:
    """Load strategy, candles and trades for the checks (raises ValueError without any data)."""
    from freqtrade.configuration import TimeRange
    from freqtrade.data import history
    from freqtrade.enums import CandleType
    from freqtrade.exchange import timeframe_to_seconds

    config = copy.deepcopy(config)
    strategy, problem = _load_strategy(config)  # may set config["timeframe"] from the strategy
    timeframe = config.get("timeframe")
    if not timeframe:
        raise ValueError("no timeframe: set 'timeframe' in the config or pass --timeframe")
    pairs = _pairs(config, timeframe)
    if not pairs:
        raise ValueError("no pairs: set exchange.pair_whitelist in the config or pass --pairs")
    startup = int(getattr(strategy, "startup_candle_count", 0) or 0)
    timerange = TimeRange.parse_timerange(
        None if config.get("timerange") is None else str(config.get("timerange")))
    candles = history.load_data(
        datadir=Path(config["datadir"]), pairs=pairs, timeframe=timeframe, timerange=timerange,
        startup_candles=startup, fail_without_data=False,
        data_format=config.get("dataformat_ohlcv", "feather"),
        candle_type=config.get("candle_type_def", CandleType.SPOT),
    )
    candles = {pair: frame for pair, frame in candles.items() if not frame.empty}
    if not candles:
        raise ValueError(
            f"no {timeframe} candles in {config['datadir']} for {', '.join(pairs)} "
            f"(format {config.get('dataformat_ohlcv', 'feather')}); download data first")
    if startup:  # as Backtesting.load_bt_data does (without its "Moving start-date" warning)
        min_date, _ = history.get_timerange(candles)
        timerange_logger = logging.getLogger("freqtrade.configuration.timerange")
        was_disabled, timerange_logger.disabled = timerange_logger.disabled, True
        try:
            timerange.adjust_start_if_necessary(timeframe_to_seconds(timeframe), startup,
                                                min_date)
        finally:
            timerange_logger.disabled = was_disabled
    inputs = Inputs(config, [p for p in pairs if p in candles], timeframe, candles, timerange,
                    startup, strategy, problem,
                    starting_balance=float(config.get("dry_run_wallet", 0) or 0),
                    missing_pairs=[p for p in pairs if p not in candles])
    _load_trades(inputs, quick_backtest)
    return inputs


def _load_trades(inputs: Inputs, quick_backtest: bool) -> None:
    problems = []
    if quick_backtest:
        try:
            inputs.trades, inputs.starting_balance = _quick_backtest(inputs.config)
            inputs.trades_source = f"a quick backtest of {len(inputs.trades)} trades"
            return
        except Exception as exc:
            problems.append(f"quick backtest not possible ({type(exc).__name__}: {exc})")
    else:
        problems.append("quick backtest skipped (--no-backtest)")
    directory = Path(inputs.config.get("exportdirectory")
                     or Path(inputs.config["user_data_dir"]) / "backtest_results")
    try:
        inputs.trades, balance, timeframe, name = _latest_result(directory, inputs.config)
        inputs.starting_balance = balance or inputs.starting_balance
        inputs.trades_source = (f"the most recent backtest result in {directory} "
                                f"({name}, {len(inputs.trades)} trades, timeframe {timeframe})")
        inputs.trades_timeframe = timeframe
    except Exception as exc:
        problems.append(f"no usable backtest result in {directory} ({type(exc).__name__}: {exc})")
        inputs.trades_source = "none: " + "; ".join(problems)
        return
    inputs.trades_source += " -- " + "; ".join(problems)


def _quick_backtest(config: dict[str, Any]) -> tuple[pd.DataFrame, float]:
    """Trades of a real backtest of the configured strategy and data (stock Freqtrade)."""
    from freqtrade.optimize.backtesting import Backtesting

    bt = Backtesting(copy.deepcopy(config))
    try:
        data, timerange = bt.load_bt_data()
        strategy = bt.strategylist[0]
        bt.backtest_one_strategy(strategy, data, timerange)
        results = bt.all_bt_content[strategy.get_strategy_name()]["results"]
        return results, float(bt.starting_balance)
    finally:
        Backtesting.cleanup()


def _latest_result(directory: Path, config: dict[str, Any]):
    from freqtrade.data.btanalysis import (
        get_latest_backtest_filename,
        load_backtest_data,
        load_backtest_stats,
    )

    filename = get_latest_backtest_filename(directory)
    stats = load_backtest_stats(directory, filename)
    strategies = stats.get("strategy", {})
    name = config.get("strategy") if config.get("strategy") in strategies else None
    if name is None:
        if len(strategies) != 1:
            raise ValueError(f"{filename} holds {len(strategies)} strategies, none of them "
                             f"'{config.get('strategy')}'")
        name = next(iter(strategies))
    trades = load_backtest_data(directory, name, filename)
    strat = strategies[name]
    return trades, strat.get("starting_balance"), strat.get("timeframe"), name


def source_status(opt: Optimization, original: Callable) -> str:
    try:
        found = fingerprint(original)
    except (OSError, TypeError) as exc:
        return f"source unavailable ({exc})"
    shown = verified_versions(opt.fingerprints, found)
    if shown:
        return f"source verified (same as freqtrade {shown})"
    return f"source differs from every verified version (fingerprint {found}): checked anyway"


def _planned(case: VerifyCase, inputs: Inputs) -> int:
    """How many checks `case` will yield (for the progress bar; an estimate is fine)."""
    if case.planned is not None:
        try:
            return int(case.planned(inputs))
        except Exception:  # an estimate only
            logger.debug("freqtrade-opt verify: planned() failed", exc_info=True)
    return len(inputs.pairs) + 1


# --- driver --------------------------------------------------------------------------------------

def registered_optimizations(extra_plugins: Iterable[Any] = ()
                             ) -> tuple[dict[str, Optimization], dict[str, str]]:
    """Every optimization the installed plugins register (plus `extra_plugins`), unfiltered."""
    from freqtrade_opt_plugin import activation

    pm, errors = activation.build_plugin_manager()
    for plugin in extra_plugins:
        pm.register(plugin)
    return activation.collect_optimizations(pm, errors), errors


def verify(
    inputs: Inputs,
    optimizations: Iterable[Optimization],
    *,
    progress: Any = None,
    also_known: Iterable[Optimization] = (),
) -> Report:
    """Run every optimization's `VerifyCase` on `inputs`. An optimization without its own case
    uses the case of another on its target (among `optimizations` and `also_known`).
    `progress`: a rich Progress, or None."""
    optimizations = list(optimizations)
    known = [*optimizations, *also_known]
    cases = {opt.name: case_of(opt, "verify_case", known) for opt in optimizations}
    report = Report(trades_source=inputs.trades_source)
    task = None
    if progress is not None:
        total = sum(_planned(case, inputs) for case in cases.values() if case is not None)
        task = progress.add_task("verifying", total=total)
    for opt in optimizations:
        case = cases[opt.name]
        try:
            original = resolve_original(opt.target)
        except Exception as exc:
            report.sources[opt.name] = f"target not found ({type(exc).__name__}: {exc})"
            report.checks.append(Check(opt.name, opt.qualname, "-", "", SKIPPED,
                                       f"{opt.target} not found in this Freqtrade: {exc}"))
            continue
        report.sources[opt.name] = source_status(opt, original)
        if case is None:
            report.checks.append(Check(opt.name, opt.qualname, "-", "", SKIPPED,
                                       f"no verifier for {opt.target} yet (no verify_case)"))
            continue
        try:
            subject = Subject(opt, original, opt.build(original))
            for check in case.run(subject, inputs):
                report.checks.append(check)
                if progress is not None:
                    progress.update(task, advance=1,
                                    description=f"{opt.name} {check.pair} {check.variant}".strip())
        except Exception as exc:  # a failure of the harness (e.g. the strategy), not a difference
            logger.debug("freqtrade-opt verify: checking '%s' failed", opt.name, exc_info=True)
            report.checks.append(Check(opt.name, opt.qualname, "-", "", SKIPPED,
                                       f"could not be checked: {type(exc).__name__}: {exc}"))
    if progress is not None and task is not None:
        progress.update(task, completed=progress.tasks[task].total or 0)
    report.notes.append(f"trades: {inputs.trades_source}")
    if inputs.missing_pairs:
        report.notes.append(f"no {inputs.timeframe} candles for {', '.join(inputs.missing_pairs)}"
                            "; not checked")
    return report


def render(report: Report, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("optimization", "function", "pair", "variant", "result",
                  title="freqtrade-opt verify: optimized vs Freqtrade's original")
    for c in report.checks:
        detail = escape(c.detail)  # pandas' messages hold "[left]:" etc., not rich markup
        shown = {EXACT: "[green]exact[/]" + (f" ({detail})" if detail else ""),
                 DIFFERENT: f"[red]DIFFERENT[/]: {detail}",
                 SKIPPED: f"[yellow]skipped[/]: {detail}"}[c.status]
        table.add_row(*map(escape, (c.optimization, c.function, c.pair, c.variant)), shown)
    console.print(table)
    for name, status in report.sources.items():
        console.print(escape(f"{name}: {status}"))
    for note in report.notes:
        console.print(escape(f"note: {note}"))
    if report.differences:
        first = report.differences[0]
        console.print(f"[red]{len(report.differences)} difference(s)[/]; first: " + escape(
            f"{first.optimization} ({first.function}) on {first.pair}: {first.detail}"))
        console.print("Turn a differing optimization off with FREQTRADE_OPT_<NAME>=false and "
                      "report it with this output.")
    elif report.exact:
        console.print(f"[green]all {len(report.exact)} checks exact[/]")
    else:
        console.print("[yellow]nothing could be checked[/]")


# --- command line --------------------------------------------------------------------------------

def _config_args(args: argparse.Namespace) -> dict[str, Any]:
    config_args: dict[str, Any] = {"config": args.config or ["config.json"],
                                   "command": "backtesting"}
    for key, value in (("strategy", args.strategy), ("timerange", args.timerange),
                       ("timeframe", args.timeframe), ("user_data_dir", args.user_data_dir),
                       ("datadir", args.datadir), ("pairs", args.pairs),
                       ("exportdirectory", args.backtest_directory)):
        if value:
            config_args[key] = value
    return config_args


def execute(
    args: argparse.Namespace,
    *,
    deactivate: bool = True,
    console: Any = None,
    extra_plugins: Sequence[Any] = (),
) -> int:
    """Run ``verify`` for parsed arguments; the exit code. `deactivate=False` keeps the plugin's
    routing in this process (for in-process use: the checks never go through Routers anyway)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from freqtrade_opt_plugin import activation
    from freqtrade_opt_plugin.offline import install_from_env

    if deactivate:
        activation.deactivate()  # stock Freqtrade for the quick backtest, no telemetry
    install_from_env()  # FREQTRADE_OFFLINE_MARKETS: the demo's / tests' static markets
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    status_console = Console(stderr=True)
    problems = status_console if args.json else console  # keep stdout valid JSON
    root_level, disabled_level = logging.root.level, logging.root.manager.disable
    if not args.verbose_freqtrade:
        logging.disable(logging.INFO)  # Freqtrade's Configuration and Backtesting log at INFO
    try:
        config = load_config(_config_args(args))
        optimizations, errors = registered_optimizations(extra_plugins)
        for plugin, error in errors.items():
            problems.print(f"[red]plugin '{escape(plugin)}' failed to load:[/] {escape(error)}")
        if args.only:
            unknown = sorted(set(args.only) - set(optimizations))
            if unknown:
                problems.print(escape(f"unknown optimization(s) {', '.join(unknown)}; known: "
                                     f"{', '.join(optimizations)}"))
                return 2
        selected = {n: o for n, o in optimizations.items() if not args.only or n in args.only}
        with status_console.status("loading strategy, candles and trades ..."):
            inputs = prepare_inputs(config, quick_backtest=not args.no_backtest)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=status_console, transient=True) as progress:
            report = verify(inputs, selected.values(), progress=progress,
                            also_known=optimizations.values())
    except Exception as exc:
        from freqtrade.exceptions import FreqtradeException

        if not isinstance(exc, FreqtradeException | ValueError | OSError):
            raise
        problems.print(f"[red]freqtrade-opt verify: {escape(str(exc))}[/]")
        return 2
    finally:
        logging.root.setLevel(root_level)  # Freqtrade's Configuration sets INFO
        logging.disable(disabled_level)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        render(report, console)
    return report.exit_code


def cmd_verify(args: argparse.Namespace) -> int:
    return execute(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", action="append", metavar="PATH",
                        help="Freqtrade config file (repeatable, like freqtrade's; "
                             "default: config.json)")
    parser.add_argument("-p", "--pairs", nargs="+", metavar="PAIR",
                        help="pairs to check (default: the config's pair_whitelist)")
    parser.add_argument("--timerange", help="candles to check, as for freqtrade backtesting")
    parser.add_argument("-s", "--strategy", help="strategy whose signals are used "
                                                 "(default: the config's)")
    parser.add_argument("-i", "--timeframe", help="timeframe (default: config / strategy)")
    parser.add_argument("--userdir", "--user-data-dir", dest="user_data_dir", metavar="PATH")
    parser.add_argument("--datadir", "--data-dir", dest="datadir", metavar="PATH")
    parser.add_argument("--backtest-directory", "--export-directory", dest="backtest_directory",
                        metavar="PATH", help="where backtest results are (default: "
                                             "user_data/backtest_results)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="check only these optimizations")
    parser.add_argument("--no-backtest", action="store_true",
                        help="do not run a quick backtest for trades (it needs the exchange's "
                             "markets); use the most recent backtest result instead")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--verbose-freqtrade", action="store_true",
                        help="keep Freqtrade's own INFO logging")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="run each optimization and Freqtrade's original side by side on your data",
        description="Run every registered optimization (also unverified ones) and Freqtrade's "
                    "original on fresh copies of your own data; print 'exact' or the first "
                    "difference per pair and function. Exit code 1 on any difference.",
    )
    add_arguments(parser)
    parser.set_defaults(func=cmd_verify)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="freqtrade-opt verify")
    add_arguments(parser)
    return execute(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
