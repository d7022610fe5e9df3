"""``freqtrade-opt report`` and ``freqtrade-opt reset``: rich tables (Freqtrade's style), CLI.

``freqtrade-opt report`` prints the tables; ``--json`` prints `generate_performance_report()`;
``--prometheus PATH`` writes the Prometheus text format atomically (node-exporter's textfile
collector); ``--html PATH`` writes a self-contained page with charts (plotly, embedded: works
offline). ``freqtrade-opt reset [NAME]`` clears the auto-disabled state and the telemetry of one
optimization, or of all (a corrupt store is then moved aside).
The report's content is built in `telemetry.report_data`; this module only renders it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from freqtrade_opt_plugin.monitor import generate_performance_report, get_monitor
from freqtrade_opt_plugin.telemetry.counters import PATHS
from freqtrade_opt_plugin.telemetry.fmt import (
    fmt_bytes,
    fmt_percent,
    fmt_ratio,
    fmt_seconds,
)
from freqtrade_opt_plugin.telemetry.report_data import build_report
from freqtrade_opt_plugin.telemetry.sinks.prometheus import (
    _labels,
    prometheus_text,
    write_prometheus,
)


__all__ = [
    "build_report", "fmt_bytes", "fmt_percent", "fmt_ratio", "handle_report", "handle_reset",
    "prometheus_text", "register", "render_report", "write_prometheus", "_labels",
]


# -- tables ---------------------------------------------------------------------------------------


def _console_width() -> int | None:
    # Freqtrade's rule (freqtrade.loggers.rich_console.console_width), without importing it
    if any(module in ("pytest", "ipykernel") for module in sys.modules):
        return 200
    try:
        width = os.get_terminal_size().columns if sys.stdout.isatty() else 1
    except OSError:
        width = 1
    return None if width > 1 else 200


def _table(rows: Iterable[Sequence[Any]], headers: Sequence[str], title: str, console) -> None:
    """Like freqtrade.util.rich_tables.print_rich_table: right-justified columns, a title."""
    from rich.table import Column, Table
    from rich.text import Text

    table = Table(*[Column(h, justify="right") for h in headers], title=title)
    for row in rows:
        table.add_row(*[cell if isinstance(cell, Text) else str(cell) for cell in row])
    console.print(table)


def _fmt_measure(alert: dict[str, Any], value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if "ratio" in (alert.get("measure") or "") else fmt_seconds(value)


def render_report(report: dict[str, Any], console=None) -> None:
    """Print `report` (from `generate_performance_report`) as rich tables."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console(width=_console_width())
    functions = report["functions"]
    system = report["system"]
    rows = []
    for f in functions:
        for path in PATHS:
            p = f[path]
            mem = p["memory"]
            peak = fmt_bytes(mem["median_peak_bytes"])
            if mem["samples"]:
                peak += f" ({mem['samples']})"
            rows.append(
                (
                    f["function"] if path == "optimized" else "",
                    path, p["calls"], p["errors"], p["fallbacks"],
                    fmt_seconds(p["mean_seconds"]), fmt_seconds(p["median_seconds"]),
                    fmt_seconds(p["p95_seconds"]), fmt_seconds(p["total_seconds"]), peak,
                )
            )
    if rows:
        _table(
            rows,
            ("Optimization", "Path", "Calls", "Errors", "Fallbacks", "Mean", "Median", "p95",
             "Total", "Peak mem (n)"),
            f"FREQTRADE-OPT CALL TIMINGS ({system['scope']})",
            console,
        )
        summary = []
        for f in functions:
            if f["disabled"]:
                status = Text("disabled", style="red")
            elif f["optimized"]["calls"]:
                status = Text("active", style="green")
            else:
                status = Text("original only", style="yellow")
            summary.append(
                (
                    f["function"],
                    fmt_percent(None if f["adoption_rate"] is None else 100 * f["adoption_rate"]),
                    fmt_ratio(f["speedup"]),
                    fmt_percent(f["improvement_percent"], signed=True),
                    fmt_seconds(f["time_saved_seconds"]),
                    status,
                )
            )
        _table(
            summary,
            ("Optimization", "Adoption", "Speedup", "Time reduction", "Time saved", "Status"),
            "OPTIMIZATION SUMMARY",
            console,
        )
    regressions = report["performance_regressions"]
    if regressions:
        _table(
            [
                (
                    r["function"], r["kind"], r.get("measure") or "-",
                    fmt_percent(r["degradation_percent"], signed=True),
                    _fmt_measure(r, r["current_median"]), _fmt_measure(r, r["reference_median"]),
                    f"{r['samples']}/{r['reference_samples']}",
                    ", ".join(r.get("runs") or ()) or "-",
                )
                for r in regressions
            ],
            ("Optimization", "Compared with", "Measure", "Slower by", "Median now", "Reference",
             "Calls", "Runs"),
            "PERFORMANCE REGRESSIONS",
            console,
        )
    store = system["store"]
    size = fmt_bytes(store["size_bytes"])
    store_text = f"{store['path']} ({size}, cap {store['max_store_mb']} MiB)"
    if store["problem"]:
        store_text = f"{store['path']}: UNUSABLE ({store['problem']})"
    elif not store["persist"]:
        store_text = "off (FREQTRADE_OPT_MONITOR_PERSIST=false)"
    elif not store["available"]:
        store_text = f"{store['path']} (not created yet)"
    active = system["optimizations_active"]
    disabled = system["optimizations_disabled"]
    rate = system["adoption_rate"]
    adoption = fmt_percent(None if rate is None else 100 * rate)
    which = "this" if system["scope"] != "all runs" else "the latest"
    processes = "-" if system["processes_in_run"] is None else system["processes_in_run"]
    overview = [
        ("Level", f"{system['level']} ({system['level_source']})" if system["level"]
         else f"unknown ({system['level_source']})"),
        ("Active optimizations",
         f"{', '.join(active) if active else 'none'} ({system['active_source']})"),
        ("Auto-disabled", "; ".join(f"{k}: {v}" for k, v in disabled.items()) or "none"),
        ("Total time saved", "not measured (no original-path timings)"
         if system["total_time_saved_seconds"] is None
         else fmt_seconds(system["total_time_saved_seconds"])),
        ("Routed calls", f"{system['total_calls']} ({adoption} optimized)"),
        ("Runs stored", f"{system['runs']} (processes in {which} run: {processes})"),
        ("Memory sampling", system["memory_sampling"]),
        ("Store", store_text),
    ]
    from rich.table import Column, Table

    table = Table(Column("Item", justify="left"), Column("Value", justify="left"),
                  title="SYSTEM OVERVIEW")
    for key, value in overview:
        table.add_row(key, value)
    console.print(table)
    console.print("Recommendations:")
    for line in report["recommendations"]:
        console.print(f"  - {line}", highlight=False)


# -- CLI ------------------------------------------------------------------------------------------


def _add_userdir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--userdir", "--user-data-dir", dest="opt_user_data_dir", metavar="PATH",
        help="Freqtrade user_data directory whose telemetry to use (default: ./user_data; "
             "FREQTRADE_OPT_STATE_DIR overrides both).",
    )


def _apply_userdir(args: argparse.Namespace) -> None:
    user_data = getattr(args, "opt_user_data_dir", None)
    if user_data:
        from freqtrade_opt_plugin.paths import remember_user_data_dir

        remember_user_data_dir(user_data)


def handle_report(args: argparse.Namespace) -> int:
    _apply_userdir(args)
    monitor = get_monitor()
    run = None
    if getattr(args, "run", "all") == "latest":
        store = monitor.store()
        runs = store.runs() if store is not None else []
        run = runs[0]["run"] if runs else monitor.run_id
    report = generate_performance_report(run=run, threshold_percent=args.threshold,
                                         monitor=monitor)
    code = 0
    if args.html:
        from freqtrade_opt_plugin.telemetry.html import write_html

        try:
            written = write_html(report, args.html)
        except OSError as exc:
            print(f"freqtrade-opt: cannot write {args.html}: {exc}", file=sys.stderr)
            return 1
        if not args.json_output:
            print(f"Wrote the HTML report to {written}")
    if args.prometheus:
        try:
            written = write_prometheus(report, args.prometheus)
        except OSError as exc:
            print(f"freqtrade-opt: cannot write {args.prometheus}: {exc}", file=sys.stderr)
            return 1
        if not args.json_output:
            print(f"Wrote Prometheus metrics to {written}")
    if args.json_output:
        print(json.dumps(report, indent=2, sort_keys=False))
    elif not args.prometheus and not args.html:
        render_report(report)
    if report["system"]["store"]["problem"]:
        code = 1
    return code


def handle_reset(args: argparse.Namespace) -> int:
    _apply_userdir(args)
    monitor = get_monitor()
    cleared = monitor.reset_persistent(args.name)
    if cleared is None:
        store = monitor.store()
        problem = store.problem if store is not None else "unknown"
        print(f"freqtrade-opt: cannot reset: the store {monitor.store_path()} is unusable "
              f"({problem}). `freqtrade-opt reset` without a name moves a corrupt store aside.",
              file=sys.stderr)
        return 1
    what = args.name or "all optimizations"
    if cleared:
        print(f"Reset {what}: cleared the auto-disabled state and telemetry of "
              f"{', '.join(cleared)}.")
    else:
        print(f"Reset {what}: nothing was stored.")
    return 0


def register(subparsers: Any) -> None:
    """Add ``report`` and ``reset`` to argparse subparsers (handlers return exit codes)."""
    report = subparsers.add_parser(
        "report",
        help="Per-optimization timings, adoption, memory, regressions and recommendations.",
        description="Show what the optimizations did, from the telemetry store "
                    "(all processes, hyperopt workers included).",
    )
    report.add_argument("--json", dest="json_output", action="store_true",
                        help="Print the report as JSON.")
    report.add_argument("--prometheus", metavar="PATH",
                        help="Write Prometheus text format to PATH (e.g. the textfile collector's "
                             "directory/freqtrade_opt.prom).")
    report.add_argument("--html", metavar="PATH",
                        help="Write a self-contained HTML page with charts to PATH (works "
                             "offline: plotly is embedded).")
    report.add_argument("--threshold", type=float, default=None, metavar="PERCENT",
                        help="Smallest slowdown reported as a regression (default: "
                             "FREQTRADE_OPT_MONITOR_THRESHOLD_PERCENT, 15).")
    report.add_argument("--run", choices=("all", "latest"), default="all",
                        help="All stored runs (default) or the latest run only.")
    _add_userdir(report)
    report.set_defaults(func=handle_report)

    reset = subparsers.add_parser(
        "reset",
        help="Re-enable an auto-disabled optimization and clear its telemetry (all without NAME).",
    )
    reset.add_argument("name", nargs="?", metavar="NAME", help="Optimization name.")
    _add_userdir(reset)
    reset.set_defaults(func=handle_reset)
