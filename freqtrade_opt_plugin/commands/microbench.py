"""``freqtrade-opt microbench``: every optimization's `BenchCase`, original vs replacement.

For each registered optimization with a bench case (its own ``bench_case``, else that of another
optimization on the same target): Freqtrade's original (``inspect.unwrap`` of the target, below
any Router) and the replacement built in front of it (``opt.build(original)``) first run once each
on inputs from two `BenchCase.setup` calls and are compared exactly (result and arguments after
the call: the proof), then alternate `repeat` timed calls each, every call on fresh inputs (the
setup is not timed). Reported per optimization: the median seconds of each path and their ratio
(original median / replacement median). Exit code 1 when a replacement differs, else 0.
The end-to-end timings of whole backtests are ``freqtrade-opt bench``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from time import perf_counter
from typing import Any

from freqtrade_opt_plugin.commands.demo import positive_int
from freqtrade_opt_plugin.registry import BenchCase, Optimization, case_of


def _proof(opt: Optimization, case: BenchCase, original: Any, optimized: Any) -> str | None:
    """The first difference between both paths on equal fresh inputs, or None."""
    from freqtrade_opt_plugin.checks import call, outcome_difference
    from freqtrade_opt_plugin.equality import first_difference

    (args, kwargs), (args2, kwargs2) = case.setup(), case.setup()
    expected = call(original, *args, **kwargs)
    got = call(optimized, *args2, **kwargs2)
    return outcome_difference(got, expected) or first_difference(
        (args2, kwargs2), (args, kwargs), "arguments after the call")


def run_case(opt: Optimization, case: BenchCase, repeat: int | None = None) -> dict[str, Any]:
    """Time one optimization's case (see the module docstring); a dict for the report."""
    from freqtrade_opt_plugin.checks import resolve_original

    original = resolve_original(opt.target)
    optimized = opt.build(original)
    difference = _proof(opt, case, original, optimized)
    times: dict[str, list[float]] = {"original": [], "optimized": []}
    paths = (("original", original), ("optimized", optimized))
    for i in range(repeat or case.repeat):
        for label, func in paths if i % 2 == 0 else paths[::-1]:
            args, kwargs = case.setup()
            start = perf_counter()
            func(*args, **kwargs)
            times[label].append(perf_counter() - start)
    medians = {label: statistics.median(values) for label, values in times.items()}
    return {
        "optimization": opt.name,
        "target": opt.target,
        "case": case.description,
        "original_median_s": medians["original"],
        "optimized_median_s": medians["optimized"],
        "speedup": medians["original"] / medians["optimized"] if medians["optimized"] else None,
        "identical": difference is None,
        "difference": difference,
        "times": times,
    }


def run(optimizations: Iterable[Optimization], *, repeat: int | None = None,
        also_known: Iterable[Optimization] = ()) -> list[dict[str, Any]]:
    """`run_case` for every optimization with a case; one without gets a row saying so."""
    optimizations = list(optimizations)
    known = [*optimizations, *also_known]
    rows = []
    for opt in optimizations:
        case = case_of(opt, "bench_case", known)
        if case is None:
            rows.append({"optimization": opt.name, "target": opt.target,
                         "skipped": "no bench_case (the end-to-end 'bench' covers it)"})
            continue
        try:
            rows.append(run_case(opt, case, repeat))
        except Exception as exc:  # a failure of the case or the target: reported, not fatal
            rows.append({"optimization": opt.name, "target": opt.target,
                         "skipped": f"could not be run: {type(exc).__name__}: {exc}"})
    return rows


def render(rows: list[dict[str, Any]], console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("optimization", "case", "original", "optimized", "speedup", "result",
                  title="freqtrade-opt microbench: median per call (original vs replacement)")
    for row in rows:
        if "skipped" in row:
            table.add_row(escape(row["optimization"]), "-", "-", "-", "-",
                          f"[yellow]skipped[/]: {escape(row['skipped'])}")
            continue
        result = "[green]identical[/]" if row["identical"] else \
            f"[red]DIFFERENT[/]: {escape(str(row['difference']))}"
        speedup = "-" if row["speedup"] is None else f"{row['speedup']:.2f}x"
        table.add_row(escape(row["optimization"]), escape(row["case"]),
                      f"{row['original_median_s'] * 1e3:.3f} ms",
                      f"{row['optimized_median_s'] * 1e3:.3f} ms", speedup, result)
    console.print(table)


def cmd_microbench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from freqtrade_opt_plugin import activation
    from freqtrade_opt_plugin.commands.verify import registered_optimizations

    activation.deactivate()  # the originals run unrouted; nothing reaches the telemetry store
    console = Console(width=None if sys.stdout.isatty() else 160)
    optimizations, errors = registered_optimizations()
    for plugin, error in errors.items():
        console.print(f"[red]plugin '{plugin}' failed to load:[/] {error}")
    selected = [opt for name, opt in optimizations.items() if not args.only or name in args.only]
    unknown = sorted(set(args.only or ()) - set(optimizations))
    if unknown:
        console.print(f"unknown optimization(s) {', '.join(unknown)}; known: "
                      f"{', '.join(optimizations)}")
        return 2
    rows = run(selected, repeat=args.repeat, also_known=optimizations.values())
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        render(rows, console)
    return 1 if any(row.get("identical") is False for row in rows) else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these optimizations")
    parser.add_argument("--repeat", type=positive_int, metavar="N",
                        help="timed calls per path (default: each case's own)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "microbench",
        help="time each optimization against Freqtrade's original in one process",
        description="Run every optimization's bench case: the original and the replacement on "
                    "the same generated inputs, compared exactly, then timed alternately. "
                    "Exit code 1 when a replacement differs.",
    )
    add_arguments(parser)
    parser.set_defaults(func=cmd_microbench)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="freqtrade-opt microbench")
    add_arguments(parser)
    return cmd_microbench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
