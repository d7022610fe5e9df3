"""``freqtrade-opt demo``: the same backtest, stock and optimized, offline, compared trade by trade.

Creates a throwaway workspace (binance spot config, Freqtrade's SampleStrategy, generated 5m
candles), runs the real ``freqtrade backtesting`` twice in fresh processes -- once with
``FREQTRADE_OPT_LEVEL=disabled`` (stock Freqtrade) and once with the chosen level -- and prints
both wall times, the speedup and whether every trade and metric is identical. Exits non-zero when
the results differ. Needs no network: markets come from a static fixture.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:  # the heavy imports happen when the demo runs, not when the CLI starts
    from rich.console import Console

    from freqtrade_opt_plugin.offline.compare import Verdict
    from freqtrade_opt_plugin.offline.workspace import BacktestRun, Workspace


DEFAULT_PAIRS = 10
DEFAULT_DAYS = 60
DEFAULT_SEED = 42
LEVEL_ENV = "FREQTRADE_OPT_LEVEL"
STATE_DIR_ENV = "FREQTRADE_OPT_STATE_DIR"

EXIT_IDENTICAL = 0
EXIT_DIFFERENT = 1
EXIT_FAILED = 2


def level_names() -> tuple[str, ...]:
    """The level names the plugin accepts (from its registry when available)."""
    try:
        from freqtrade_opt_plugin.registry import OptimizationLevel

        return tuple(level.name.lower() for level in OptimizationLevel)
    except (ImportError, AttributeError):
        return ("disabled", "conservative", "standard", "aggressive", "experimental")


@dataclass
class DemoResult:
    workspace: Workspace
    stock: BacktestRun
    optimized: BacktestRun
    verdict: Verdict
    level: str

    @property
    def speedup(self) -> float:
        return self.stock.wall_time / self.optimized.wall_time

    @property
    def exit_code(self) -> int:
        return EXIT_IDENTICAL if self.verdict.identical else EXIT_DIFFERENT


@contextmanager
def _step(console: Console, text: str) -> Iterator[Callable[[str], None]]:
    """A spinner with elapsed time while the step runs, then a check mark line."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    done: list[str] = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        progress.add_task(text, total=None)
        start = time.perf_counter()
        yield done.append
    elapsed = time.perf_counter() - start
    detail = f" -- {done[-1]}" if done else ""
    console.print(f"[green]✓[/] {text}{detail} [dim]({elapsed:.1f} s)[/]")


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _profit(run: BacktestRun) -> str:
    stats = run.strategy_stats
    currency = stats["stake_currency"]
    return f"{stats['profit_total_abs']:.2f} {currency} ({stats['profit_total']:.2%})"


def _print_summary(console: Console, result: DemoResult) -> None:
    from rich.table import Table

    stock, optimized, verdict = result.stock, result.optimized, result.verdict
    table = Table(title="freqtrade backtesting: stock vs. freqtrade-opt", title_justify="left")
    table.add_column("")
    table.add_column("stock Freqtrade", justify="right")
    table.add_column("with freqtrade-opt", justify="right")
    table.add_row(LEVEL_ENV, stock.env[LEVEL_ENV], optimized.env[LEVEL_ENV])
    table.add_row("wall time", _fmt_seconds(stock.wall_time), _fmt_seconds(optimized.wall_time))
    speedup = result.speedup
    colour = "green" if speedup >= 1.05 else "yellow"
    table.add_row("speedup", "1.00x", f"[{colour}]{speedup:.2f}x[/]")
    table.add_row("trades", str(len(stock.raw_trades)), str(len(optimized.raw_trades)))
    table.add_row("total profit", _profit(stock), _profit(optimized))
    outcome = "[bold green]identical[/]" if verdict.identical else "[bold red]DIFFERENT[/]"
    table.add_row("results", "reference", outcome)
    console.print(table)
    if verdict.identical:
        console.print(
            f"[green]✓ Identical results:[/] {len(stock.raw_trades)} trades and all metrics, "
            f"{verdict.values_compared:,} values compared trade by trade, field by field."
        )
    else:
        console.print(
            f"[red]✗ Results differ:[/] {verdict.differences:,} of "
            f"{verdict.values_compared:,} values."
        )
    if not verdict.identical and verdict.first_difference is not None:
        diff = verdict.first_difference
        where = f"trade #{diff.trade_index}, " if diff.trade_index is not None else ""
        console.print(
            f"[red]First difference[/] ({diff.section}, {where}field [bold]{diff.field}[/]): "
            f"stock {diff.left!r} vs. optimized {diff.right!r}"
        )


def _secs(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _print_performance_report(console: Console, state_dir: Path) -> None:
    """Show the monitor's report of both runs (per-call timings, adoption, time saved)."""
    previous = os.environ.get(STATE_DIR_ENV)
    os.environ[STATE_DIR_ENV] = str(state_dir)
    try:
        from freqtrade_opt_plugin.monitor import generate_performance_report

        report: Any = generate_performance_report()
    except Exception as exc:  # the demo's verdict stands; the report is a bonus
        console.print(f"[yellow]performance report unavailable:[/] {exc}")
        return
    finally:
        if previous is None:
            os.environ.pop(STATE_DIR_ENV, None)
        else:
            os.environ[STATE_DIR_ENV] = previous
    if report.get("functions"):
        from freqtrade_opt_plugin.commands.report import render_report

        console.print()
        render_report(report, console)


def run_demo(
    pairs: int = DEFAULT_PAIRS,
    days: int = DEFAULT_DAYS,
    *,
    seed: int = DEFAULT_SEED,
    keep: bool | str | os.PathLike = False,
    level: str = "standard",
    console: Console | None = None,
) -> DemoResult:
    """Run the demo; ``keep`` = a directory to create the workspace in and keep, or True to keep
    the temporary one. Raises ``HarnessError`` when a Freqtrade run fails."""
    from rich.console import Console

    from freqtrade_opt_plugin.offline.compare import compare_backtests
    from freqtrade_opt_plugin.offline.datagen import default_pairs
    from freqtrade_opt_plugin.offline.workspace import create_workspace, run_backtest

    if level not in level_names():
        raise ValueError(f"level must be one of {', '.join(level_names())}, got {level!r}")
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    console = console or Console()
    pair_list = default_pairs(pairs)
    if keep and not isinstance(keep, bool):
        root = Path(keep).expanduser().resolve()
        if root.exists() and any(root.iterdir()):
            raise ValueError(f"--keep directory {root} exists and is not empty")
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="freqtrade-opt-demo-"))
    console.print(
        f"[bold]freqtrade-opt demo[/]: {len(pair_list)} pairs x {days} days of 5m candles, "
        f"binance spot, SampleStrategy, offline [dim](workspace {root})[/]"
    )
    try:
        with _step(console, "Generating candles and workspace") as note:
            workspace = create_workspace(root, pair_list, days=days, seed=seed)
            gaps = sum(d.gaps for d in workspace.data)
            zero = sum(d.zero_volume for d in workspace.data)
            note(f"{workspace.candles:,} candles ({gaps} missing, {zero} with zero volume)")
        state_dir = workspace.user_data / "freqtrade_opt"
        runs = {}
        for label, run_level in (("stock Freqtrade", "disabled"), ("optimized", level)):
            env = {LEVEL_ENV: run_level, STATE_DIR_ENV: str(state_dir)}
            title = f"Backtest {len(runs) + 1}/2: {label} [dim]({LEVEL_ENV}={run_level})[/]"
            with _step(console, title) as note:
                runs[label] = run_backtest(workspace, env, name=label.split()[0])
                note(f"{len(runs[label].raw_trades)} trades")
        verdict = compare_backtests(runs["stock Freqtrade"], runs["optimized"])
        result = DemoResult(workspace, runs["stock Freqtrade"], runs["optimized"], verdict, level)
        console.print()
        _print_summary(console, result)
        _print_performance_report(console, state_dir)
        return result
    finally:
        if keep:
            console.print(f"[dim]workspace kept in {root}[/]")
        else:
            shutil.rmtree(root, ignore_errors=True)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`, with a message naming the bad value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)


def _bounded_int(maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"at most {maximum}, got {value}")
        return value

    return parse


def cmd_demo(args: argparse.Namespace) -> int:
    """Handler of ``freqtrade-opt demo``: 0 identical, 1 different, 2 failed to run."""
    from rich.console import Console

    from freqtrade_opt_plugin.offline.workspace import HarnessError

    console = Console()
    try:
        result = run_demo(
            args.pairs, args.days, seed=args.seed, keep=args.keep or False, level=args.level,
            console=console,
        )
    except (HarnessError, ValueError) as exc:
        from rich.markup import escape

        console.print(f"[red]demo failed:[/] {escape(str(exc))}", highlight=False)
        return EXIT_FAILED
    return result.exit_code


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` sub-command to ``freqtrade-opt``."""
    from freqtrade_opt_plugin.offline.datagen import DEFAULT_PAIRS as PAIR_CHOICES

    parser = subparsers.add_parser(
        "demo",
        help="backtest stock vs. optimized offline and compare the results trade by trade",
        description=(
            "Create a throwaway workspace (binance spot, Freqtrade's SampleStrategy, generated "
            "5m candles), run the real 'freqtrade backtesting' twice -- stock "
            "(FREQTRADE_OPT_LEVEL=disabled) and optimized -- and compare wall time and every "
            "trade and metric. Offline. Exit code: 0 identical, 1 results differ, 2 a run failed."
        ),
    )
    parser.add_argument(
        "--pairs", type=_bounded_int(len(PAIR_CHOICES)), default=DEFAULT_PAIRS, metavar="N",
        help=f"number of USDT pairs, 1-{len(PAIR_CHOICES)} (default: {DEFAULT_PAIRS})",
    )
    parser.add_argument(
        "--days", type=positive_int, default=DEFAULT_DAYS, metavar="N",
        help=f"days of 5m candles per pair (default: {DEFAULT_DAYS})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"data seed (default: {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="create the workspace in DIR and keep it (default: a "
        "temporary directory, removed afterwards)",
    )
    parser.add_argument(
        "--level", choices=level_names(), default="standard",
        help="optimization level of the optimized run (default: standard)",
    )
    parser.set_defaults(func=cmd_demo)
    return parser


if __name__ == "__main__":
    import sys

    _parser = argparse.ArgumentParser(prog="python -m freqtrade_opt_plugin.commands.demo")
    _sub = _parser.add_subparsers()
    register(_sub)
    _args = _parser.parse_args(["demo", *sys.argv[1:]])
    sys.exit(_args.func(_args))
