"""``freqtrade-opt bench``: end-to-end timings of stock Freqtrade against the plugin, with proof.

Backtest mode (the default) creates one offline workspace per size of ``--scale`` (``PAIRSxDAYS``:
generated 5m candles, binance spot, Freqtrade's SampleStrategy), then runs the real
``freqtrade backtesting`` in fresh processes, alternating stock (``FREQTRADE_OPT_LEVEL=disabled``)
and plugin (``--level``, default ``standard``) ``--repeat`` times. Every plugin run's trades and
metrics are compared with those of the stock run of the same repetition
(`freqtrade_opt_plugin.offline.compare.compare_backtests`). Reported per size: the median wall time
of each, their ratio (stock median / plugin median), the per-repetition ratios, the trade count and
the identity verdict.

Hyperopt mode (``--hyperopt``) does the same with ``freqtrade hyperopt`` (fixed ``--random-state``,
``--jobs`` workers, ``--epochs`` epochs, spaces ``buy sell``) and compares every epoch
(`compare_hyperopt`). Besides wall time and wall time per epoch it measures the marginal cost of
an epoch: each repetition also runs 1 epoch, and ``(wall(N) - wall(1)) / (N - 1)`` removes the
start-up (imports, data loading, indicators, worker pool) that does not grow with the epochs.

Wall times are end to end (interpreter start to exit) as a user sees them. Each run gets a fresh,
empty plugin state directory (``--state fresh``: cold caches, no carried-over auto-disable);
``--state shared`` lets the runs of a size share one. ``FREQTRADE_OPT_*`` variables of the calling
environment are not passed on: both variants run with exactly the settings the bench chooses.
``--json PATH`` writes every raw timing, the load averages, the machine and the verdicts.
Exit code: 0 identical, 1 results differ, 2 a run failed, 3 identical but below ``--min-speedup``.
Offline: markets come from a static fixture.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freqtrade_opt_plugin.commands._bench_loop import (
    EXIT_DIFFERENT,
    EXIT_FAILED,
    EXIT_IDENTICAL,
    EXIT_TOO_SLOW,
    IDENTICAL,
    LEVEL_ENV,
    PLUGIN,
    SCHEMA,
    STOCK,
    STOCK_LEVEL,
    Mode,
    ratio,
    run_bench,
    stats,
    summary_tail,
)
from freqtrade_opt_plugin.commands.demo import int_at_least, level_names, positive_int


if TYPE_CHECKING:  # heavy imports happen when the bench runs, not when the CLI starts
    from rich.console import Console


__all__ = [
    "EXIT_DIFFERENT", "EXIT_FAILED", "EXIT_IDENTICAL", "EXIT_TOO_SLOW", "SCHEMA", "Size",
    "cmd_bench", "main", "parse_scale", "print_backtest_table", "print_hyperopt_table", "register",
    "run_backtest_bench", "run_hyperopt_bench",
    "write_json",
]

DEFAULT_BACKTEST_SCALE = "3x30,10x90"
DEFAULT_HYPEROPT_SCALE = "3x30"
DEFAULT_REPEAT = 3
DEFAULT_EPOCHS = 20
DEFAULT_JOBS = 2
DEFAULT_RANDOM_STATE = 42
DEFAULT_SPACES = ("buy", "sell")
DEFAULT_LOSS = "SharpeHyperOptLoss"
DEFAULT_SEED = 42

# --------------------------------------------------------------------------------------------
# backtest mode


@dataclass(frozen=True)
class Size:
    """One workspace size: ``pairs`` default USDT pairs x ``days`` days of 5m candles."""

    pairs: int
    days: int

    @property
    def label(self) -> str:
        return f"{self.pairs}x{self.days}"


def parse_scale(text: str) -> list[Size]:
    """``"2x30,5x60"`` -> [Size(2, 30), Size(5, 60)]; raises ValueError naming the bad entry."""
    from freqtrade_opt_plugin.offline.datagen import DEFAULT_PAIRS

    sizes: list[Size] = []
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        parts = entry.split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(
                f"bad scale entry {raw.strip()!r}: expected PAIRSxDAYS, e.g. 10x90 "
                "(comma-separated for several sizes)"
            )
        pairs, days = int(parts[0]), int(parts[1])
        if not 1 <= pairs <= len(DEFAULT_PAIRS):
            raise ValueError(
                f"bad scale entry {raw.strip()!r}: pairs must be 1-{len(DEFAULT_PAIRS)}, "
                f"got {pairs}"
            )
        if days < 1:
            raise ValueError(f"bad scale entry {raw.strip()!r}: days must be >= 1, got {days}")
        size = Size(pairs, days)
        if size in sizes:
            raise ValueError(f"scale entry {size.label} given twice")
        sizes.append(size)
    if not sizes:
        raise ValueError(f"empty scale {text!r}: expected e.g. 3x30,10x90")
    return sizes


def run_backtest_bench(
    sizes: Sequence[Size],
    *,
    repeat: int = DEFAULT_REPEAT,
    level: str = "standard",
    seed: int = DEFAULT_SEED,
    warmup: int = 0,
    state: str = "fresh",
    keep: str | os.PathLike | None = None,
    min_speedup: float | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Time stock vs plugin backtests for every size; returns the report (see module doc).

    Raises ``HarnessError`` when a Freqtrade run fails and ``ValueError`` on bad arguments; the
    report built so far is attached to the exception as ``exc.bench_report``.
    """
    from freqtrade_opt_plugin.offline.compare import compare_backtests
    from freqtrade_opt_plugin.offline.workspace import run_backtest

    _check_common(level, repeat, warmup, state)
    mode = Mode(
        name="backtest", points=(None,),
        run=lambda workspace, env, name, point: run_backtest(workspace, env, name=name),
        fields=lambda run, point: {"trades": len(run.raw_trades)},
        done=lambda run: f"{run.wall_time:.2f} s, {len(run.raw_trades)} trades",
        compare=compare_backtests,
        cleanup=lambda run: shutil.rmtree(run.result_dir, ignore_errors=True),
        summarize=_summarize_backtest_size, ratio_key="ratio",
    )
    settings = {
        "scale": ",".join(s.label for s in sizes), "repeat": repeat, "warmup": warmup,
        "level": level, "seed": seed, "state": state, "timeframe": "5m",
        "strategy": "SampleStrategy", "min_speedup": min_speedup,
    }

    def banner(report: dict[str, Any], root: Path) -> str:
        return (
            f"[bold]freqtrade-opt bench[/]: backtesting, stock ({LEVEL_ENV}={STOCK_LEVEL}) vs "
            f"plugin ({LEVEL_ENV}={level}), {repeat} repetition(s) alternating, sizes "
            f"{report['settings']['scale']} (pairs x days of 5m) [dim](workspaces in {root}; "
            f"load average {_fmt_load(report['machine']['loadavg_start'])})[/]"
        )

    return run_bench(mode, sizes, settings, banner, repeat=repeat, level=level, seed=seed,
                      warmup=warmup, state=state, keep=keep, min_speedup=min_speedup,
                      console=console)


def _summarize_backtest_size(entry: dict[str, Any]) -> None:
    runs = entry["runs"]
    stock = [r["wall_time"] for r in runs if r["variant"] == STOCK]
    plugin = [r["wall_time"] for r in runs if r["variant"] == PLUGIN]
    entry[STOCK] = stats(stock)
    entry[PLUGIN] = stats(plugin)
    entry["ratio"] = ratio(entry[STOCK]["median"], entry[PLUGIN]["median"])
    cpu = {v: [r["cpu_time"] for r in runs if r["variant"] == v and r["cpu_time"] is not None]
           for v in (STOCK, PLUGIN)}
    entry["cpu"] = {v: stats(cpu[v]) for v in (STOCK, PLUGIN)}
    entry["ratio_cpu"] = ratio(entry["cpu"][STOCK]["median"], entry["cpu"][PLUGIN]["median"])
    paired = [round(s / p, 4) for s, p in zip(stock, plugin, strict=True) if p > 0]
    entry["paired_ratios"] = paired
    entry["paired_ratio_median"] = round(statistics.median(paired), 4) if paired else None
    entry["trades"] = runs[0]["trades"] if runs else None
    summary_tail(entry)


# --------------------------------------------------------------------------------------------
# hyperopt mode


def run_hyperopt_bench(
    sizes: Sequence[Size],
    *,
    repeat: int = DEFAULT_REPEAT,
    level: str = "standard",
    seed: int = DEFAULT_SEED,
    epochs: int = DEFAULT_EPOCHS,
    jobs: int = DEFAULT_JOBS,
    random_state: int = DEFAULT_RANDOM_STATE,
    spaces: Sequence[str] = DEFAULT_SPACES,
    loss: str = DEFAULT_LOSS,
    marginal: bool = True,
    warmup: int = 0,
    state: str = "fresh",
    keep: str | os.PathLike | None = None,
    min_speedup: float | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Time stock vs plugin hyperopts (``epochs`` epochs, and 1 epoch for the start-up when
    ``marginal`` and ``epochs > 1``) for every size; returns the report (see module doc)."""
    from freqtrade_opt_plugin.offline.compare import compare_hyperopt
    from freqtrade_opt_plugin.offline.workspace import run_hyperopt

    _check_common(level, repeat, warmup, state)
    if epochs < 1 or jobs < 1:
        raise ValueError(f"epochs and jobs must be >= 1, got epochs={epochs}, jobs={jobs}")
    marginal = marginal and epochs > 1

    def cleanup(run: Any) -> None:
        run.results_file.unlink(missing_ok=True)
        shutil.rmtree(run.log_path.parent, ignore_errors=True)

    mode = Mode(
        name="hyperopt", points=(epochs, 1) if marginal else (epochs,),
        run=lambda workspace, env, name, n: run_hyperopt(
            workspace, env, epochs=n, jobs=jobs, random_state=random_state, spaces=spaces,
            loss=loss, name=name),
        fields=lambda run, n: {"epochs_requested": n, "epochs_recorded": len(run.epochs),
                               "best_loss": run.best["loss"]},
        done=lambda run: (f"{run.wall_time:.2f} s, {len(run.epochs)} epochs, "
                          f"best loss {run.best['loss']:.5g}"),
        compare=compare_hyperopt, cleanup=cleanup,
        summarize=lambda entry: _summarize_hyperopt_size(entry, epochs, marginal),
        ratio_key="ratio_marginal_epoch" if marginal else "ratio_per_epoch",
        label=lambda n: f"-{n}ep", title=lambda n: f" {n} epoch(s)",
        what=lambda n: f"plugin vs stock, {n} epoch(s), same repetition",
    )
    settings = {
        "scale": ",".join(s.label for s in sizes), "repeat": repeat, "warmup": warmup,
        "level": level, "seed": seed, "state": state, "timeframe": "5m",
        "strategy": "SampleStrategy", "epochs": epochs, "jobs": jobs,
        "random_state": random_state, "spaces": list(spaces), "loss": loss,
        "marginal": marginal, "min_speedup": min_speedup,
    }

    def banner(report: dict[str, Any], root: Path) -> str:
        return (
            f"[bold]freqtrade-opt bench[/]: hyperopt, stock ({LEVEL_ENV}={STOCK_LEVEL}) vs "
            f"plugin ({LEVEL_ENV}={level}), {epochs} epochs, -j {jobs}, --random-state "
            f"{random_state}, spaces {' '.join(spaces)}, {repeat} repetition(s) alternating"
            f"{', plus 1-epoch runs for the start-up' if marginal else ''}, sizes "
            f"{report['settings']['scale']} [dim](workspaces in {root}; load average "
            f"{_fmt_load(report['machine']['loadavg_start'])})[/]"
        )

    return run_bench(mode, sizes, settings, banner, repeat=repeat, level=level, seed=seed,
                      warmup=warmup, state=state, keep=keep, min_speedup=min_speedup,
                      console=console)


def _summarize_hyperopt_size(entry: dict[str, Any], epochs: int, marginal: bool) -> None:
    runs = entry["runs"]
    for variant in (STOCK, PLUGIN):
        full = [r["wall_time"] for r in runs if r["variant"] == variant
                and r["epochs_requested"] == epochs]
        one = [r["wall_time"] for r in runs if r["variant"] == variant
               and r["epochs_requested"] == 1] if marginal else []
        # per repetition: the N-epoch and 1-epoch runs ran back to back, under similar load
        marginals = [(n - s) / (epochs - 1) for n, s in zip(full, one, strict=True)]
        cpu_full = [r["cpu_time"] for r in runs if r["variant"] == variant
                    and r["epochs_requested"] == epochs and r["cpu_time"] is not None]
        cpu_one = [r["cpu_time"] for r in runs if r["variant"] == variant
                   and r["epochs_requested"] == 1 and r["cpu_time"] is not None] if marginal else []
        cpu_marginals = [(n - s) / (epochs - 1) for n, s in zip(cpu_full, cpu_one, strict=False)]
        entry[variant] = {
            "wall": stats(full),
            "cpu": stats(cpu_full),
            "per_epoch": stats([w / epochs for w in full]),
            "startup_1_epoch": stats(one),
            "marginal_epoch": stats(marginals),
            "marginal_epoch_cpu": stats(cpu_marginals),
        }
    s, p = entry[STOCK], entry[PLUGIN]
    entry["ratio_wall"] = ratio(s["wall"]["median"], p["wall"]["median"])
    entry["ratio_cpu"] = ratio(s["cpu"]["median"], p["cpu"]["median"])
    entry["ratio_per_epoch"] = ratio(s["per_epoch"]["median"], p["per_epoch"]["median"])
    entry["ratio_marginal_epoch"] = ratio(
        s["marginal_epoch"]["median"], p["marginal_epoch"]["median"]
    )
    entry["ratio_marginal_epoch_cpu"] = ratio(
        s["marginal_epoch_cpu"]["median"], p["marginal_epoch_cpu"]["median"]
    )
    entry["epochs"] = epochs
    summary_tail(entry)


def _check_common(level: str, repeat: int, warmup: int, state: str) -> None:
    if level not in level_names():
        raise ValueError(f"level must be one of {', '.join(level_names())}, got {level!r}")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if state not in ("fresh", "shared"):
        raise ValueError(f"state must be 'fresh' or 'shared', got {state!r}")


# --------------------------------------------------------------------------------------------
# output


def _fmt_load(load: list[float] | None) -> str:
    return "n/a" if not load else " / ".join(f"{x:.2f}" for x in load)


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _fmt_x(value: float | None) -> str:
    if value is None:
        return "-"
    colour = "green" if value >= 1.05 else "yellow" if value >= 0.95 else "red"
    return f"[{colour}]{value:.2f}x[/]"


def _fmt_verdict(entry: dict[str, Any]) -> str:
    return "[bold green]identical[/]" if entry["verdict"] == IDENTICAL else "[bold red]DIFFERENT[/]"


def print_backtest_table(console: Console, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"freqtrade backtesting end to end: stock vs. freqtrade-opt "
              f"({report['settings']['level']}), median of {report['settings']['repeat']}",
        title_justify="left",
    )
    for name, justify in (("size", "left"), ("candles", "right"), ("stock", "right"),
                          ("plugin", "right"), ("speedup", "right"), ("per-rep speedups", "right"),
                          ("CPU speedup", "right"),
                          ("trades", "right"), ("results", "left"), ("load 1m", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for entry in report["sizes"]:
        if "verdict" not in entry:
            continue
        table.add_row(
            entry["label"], f"{entry['candles']:,}", _fmt_s(entry[STOCK]["median"]),
            _fmt_s(entry[PLUGIN]["median"]), _fmt_x(entry["ratio"]),
            " ".join(f"{r:.2f}" for r in entry["paired_ratios"]), _fmt_x(entry["ratio_cpu"]),
            str(entry["trades"]),
            _fmt_verdict(entry), str(entry["loadavg_1min_median"] or "-"),
        )
    console.print(table)
    console.print(
        "[dim]speedup = stock median / plugin median of the end-to-end wall time; CPU = "
        "user+system seconds of the run's processes (less sensitive to other load).[/]"
    )
    _print_footer(console, report)


def print_hyperopt_table(console: Console, report: dict[str, Any]) -> None:
    from rich.table import Table

    settings = report["settings"]
    table = Table(
        title=f"freqtrade hyperopt: stock vs. freqtrade-opt ({settings['level']}), "
              f"{settings['epochs']} epochs, -j {settings['jobs']}, median of "
              f"{settings['repeat']}",
        title_justify="left",
    )
    for name in ("size", "stock wall", "plugin wall", "speedup", "stock s/epoch",
                 "plugin s/epoch", "stock marginal", "plugin marginal", "marginal speedup",
                 "CPU marginal speedup", "results", "load 1m"):
        table.add_column(name, justify="left" if name in ("size", "results") else "right")
    for entry in report["sizes"]:
        if "verdict" not in entry:
            continue
        s, p = entry[STOCK], entry[PLUGIN]
        table.add_row(
            entry["label"], _fmt_s(s["wall"]["median"]), _fmt_s(p["wall"]["median"]),
            _fmt_x(entry["ratio_wall"]), _fmt_s(s["per_epoch"]["median"]),
            _fmt_s(p["per_epoch"]["median"]), _fmt_s(s["marginal_epoch"]["median"]),
            _fmt_s(p["marginal_epoch"]["median"]), _fmt_x(entry["ratio_marginal_epoch"]),
            _fmt_x(entry["ratio_marginal_epoch_cpu"]),
            _fmt_verdict(entry), str(entry["loadavg_1min_median"] or "-"),
        )
    console.print(table)
    if settings["marginal"]:
        console.print(
            "[dim]marginal = (wall of N epochs - wall of 1 epoch) / (N - 1), per repetition: "
            "the cost of one more epoch without the start-up. CPU = user+system seconds of the "
            "run's processes (less sensitive to other load than wall time).[/]"
        )
    _print_footer(console, report)


def _print_footer(console: Console, report: dict[str, Any]) -> None:
    machine = report["machine"]
    console.print(
        f"[dim]{machine['cpu_count']} CPUs ({machine['cpu_usable']} usable), Python "
        f"{machine['python']}, freqtrade {machine['freqtrade_version']}, freqtrade-opt-plugin "
        f"{machine['plugin_version']}; load average (1/5/15 min) at start "
        f"{_fmt_load(machine['loadavg_start'])}, at end {_fmt_load(machine.get('loadavg_end'))}"
        f"[/]"
    )
    hidden = report["settings"].get("hidden_caller_env")
    if hidden:
        console.print(f"[yellow]not passed on to the runs:[/] {', '.join(hidden)}")
    for entry in report["sizes"]:
        diff = entry.get("first_difference")
        if diff:
            console.print(
                f"[red]✗ {entry['label']}: results differ; first difference:[/] "
                f"{diff['description']}", highlight=False,
            )
    if report["verdict"] == IDENTICAL:
        count = sum(len(e["comparisons"]) for e in report["sizes"])
        console.print(f"[green]✓ Identical results[/] in all {count} stock/plugin comparisons.")


def write_json(report: dict[str, Any], path: str | os.PathLike) -> Path:
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return target


# --------------------------------------------------------------------------------------------
# command line


def cmd_bench(args: argparse.Namespace) -> int:
    """Handler of ``freqtrade-opt bench``: 0 identical, 1 different, 2 failed, 3 too slow."""
    from rich.console import Console
    from rich.markup import escape

    from freqtrade_opt_plugin.offline.workspace import HarnessError

    console = Console(width=None if sys.stdout.isatty() else 160)
    report: dict[str, Any] | None = None
    try:
        sizes = parse_scale(
            args.scale or (DEFAULT_HYPEROPT_SCALE if args.hyperopt else DEFAULT_BACKTEST_SCALE)
        )
        common = dict(repeat=args.repeat, level=args.level, seed=args.seed, warmup=args.warmup,
                      state=args.state, keep=args.keep, min_speedup=args.min_speedup,
                      console=console)
        if args.hyperopt and args.dask:  # loky vs a local Dask cluster (cluster/bench.py)
            from freqtrade_opt_plugin.cluster.bench import run_cluster_bench

            report = run_cluster_bench(
                sizes, epochs=args.epochs, jobs=args.jobs, random_state=args.random_state,
                spaces=args.spaces, loss=args.loss, marginal=not args.no_marginal, **common,
            )
        elif args.hyperopt:
            report = run_hyperopt_bench(
                sizes, epochs=args.epochs, jobs=args.jobs, random_state=args.random_state,
                spaces=args.spaces, loss=args.loss, marginal=not args.no_marginal, **common,
            )
        else:
            report = run_backtest_bench(sizes, **common)
    except (HarnessError, ValueError) as exc:
        console.print(f"[red]bench failed:[/] {escape(str(exc))}", highlight=False)
        partial = getattr(exc, "bench_report", None)
        if partial is not None and args.json:
            partial["exit_code"] = EXIT_FAILED
            console.print(f"[dim]partial results written to {write_json(partial, args.json)}[/]")
        return EXIT_FAILED
    console.print()
    if args.hyperopt and args.dask:
        from freqtrade_opt_plugin.cluster.bench import print_cluster_table

        print_cluster_table(console, report)
    elif args.hyperopt:
        print_hyperopt_table(console, report)
    else:
        print_backtest_table(console, report)
    if args.json:
        console.print(f"[dim]JSON written to {write_json(report, args.json)}[/]")
    if report["exit_code"] == EXIT_TOO_SLOW:
        console.print(f"[yellow]speedup below --min-speedup {args.min_speedup}[/]")
    return int(report["exit_code"])


def _scale(text: str) -> str:
    try:
        parse_scale(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to ``freqtrade-opt``."""
    parser = subparsers.add_parser(
        "bench",
        help="end-to-end benchmark: stock vs. plugin backtests (or hyperopts), with identity "
             "check",
        description=(
            "Run the real 'freqtrade backtesting' (or, with --hyperopt, 'freqtrade hyperopt') "
            "offline on generated workspaces, alternating stock (FREQTRADE_OPT_LEVEL=disabled) "
            "and plugin (--level) runs, and report median wall times, speedups and whether every "
            "result is identical. Exit code: 0 identical, 1 results differ, 2 a run failed, "
            "3 identical but slower than --min-speedup."
        ),
    )
    parser.add_argument(
        "--scale", type=_scale, metavar="PxD[,PxD...]",
        help=f"sizes as pairs x days of 5m candles (default: {DEFAULT_BACKTEST_SCALE}; with "
             f"--hyperopt {DEFAULT_HYPEROPT_SCALE})",
    )
    parser.add_argument(
        "--repeat", type=positive_int, default=DEFAULT_REPEAT, metavar="N",
        help=f"timed repetitions of each variant per size (default: {DEFAULT_REPEAT})",
    )
    parser.add_argument(
        "--level", choices=level_names(), default="standard",
        help="optimization level of the plugin runs (default: standard)",
    )
    parser.add_argument(
        "--warmup", type=int_at_least(0), default=0, metavar="N",
        help="untimed stock+plugin rounds per size before the timed ones (default: 0)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"data seed (default: {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--state", choices=("fresh", "shared"), default="fresh",
        help="plugin state/cache directory: a fresh one per run (cold, default) or one shared by "
             "the runs of a size",
    )
    parser.add_argument("--json", metavar="PATH", help="write all timings and verdicts as JSON")
    parser.add_argument(
        "--keep", metavar="DIR", help="create the workspaces and results in DIR and keep them "
        "(default: a temporary directory, removed afterwards)",
    )
    parser.add_argument(
        "--min-speedup", type=_positive_float, metavar="X",
        help="exit with 3 if a size's speedup (backtest: stock/plugin median; hyperopt: "
             "marginal epoch, else per epoch) is below X",
    )
    hyperopt = parser.add_argument_group("hyperopt mode")
    hyperopt.add_argument("--hyperopt", action="store_true",
                          help="benchmark 'freqtrade hyperopt' instead of backtesting")
    hyperopt.add_argument(
        "--epochs", type=positive_int, default=DEFAULT_EPOCHS, metavar="N",
        help=f"epochs per hyperopt run (default: {DEFAULT_EPOCHS})",
    )
    hyperopt.add_argument(
        "-j", "--jobs", type=positive_int, default=DEFAULT_JOBS, metavar="N",
        help=f"hyperopt worker processes (default: {DEFAULT_JOBS})",
    )
    hyperopt.add_argument(
        "--random-state", type=int, default=DEFAULT_RANDOM_STATE, metavar="N",
        help=f"hyperopt random state (default: {DEFAULT_RANDOM_STATE})",
    )
    hyperopt.add_argument(
        "--spaces", nargs="+", default=list(DEFAULT_SPACES), metavar="SPACE",
        help=f"hyperopt spaces (default: {' '.join(DEFAULT_SPACES)})",
    )
    hyperopt.add_argument(
        "--loss", default=DEFAULT_LOSS, help=f"hyperopt loss (default: {DEFAULT_LOSS})"
    )
    hyperopt.add_argument(
        "--no-marginal", action="store_true",
        help="skip the 1-epoch runs that measure the start-up (no marginal epoch cost)",
    )
    hyperopt.add_argument(
        "--dask", action="store_true",
        help="-j loky vs a local Dask cluster of 2 single-thread workers (overhead per epoch)",
    )
    parser.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``freqtrade-opt bench ARGS`` without the rest of the CLI (used by benchmarks/run.py)."""
    parser = argparse.ArgumentParser(prog="freqtrade-opt")
    register(parser.add_subparsers())
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
