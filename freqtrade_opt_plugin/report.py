"""The monitor's report: building it, rich tables (Freqtrade's style), Prometheus text, the CLI.

``freqtrade-opt report`` prints the tables; ``--json`` prints `generate_performance_report()`;
``--prometheus PATH`` writes the Prometheus text exposition format atomically (for
node-exporter's textfile collector: point it at a ``*.prom`` file in the collector's directory).
``freqtrade-opt reset [NAME]`` clears the auto-disabled state and the telemetry of one
optimization, or of all (a corrupt store is then moved aside).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from freqtrade_opt_plugin.monitor import (
    ENV_PREFIX,
    PATHS,
    Monitor,
    MonitorSettings,
    RegressionAlert,
    detect_performance_regressions,
    fmt_seconds,
    generate_performance_report,
    get_monitor,
    quantile,
)
from freqtrade_opt_plugin.telemetry_store import TelemetryStore, Totals


# -- building the report -------------------------------------------------------------------------


def _path_report(totals: Totals, timings: list[float], peaks: list[int]) -> dict[str, Any]:
    return {
        "calls": totals.calls,
        "errors": totals.errors,
        "fallbacks": totals.fallbacks,
        "error_rate": totals.errors / totals.calls if totals.calls else None,
        "timed_calls": totals.timed_calls,
        "timed_seconds": totals.timed_seconds,
        "mean_seconds": totals.timed_seconds / totals.timed_calls if totals.timed_calls else None,
        "median_seconds": statistics.median(timings) if timings else None,
        "p95_seconds": quantile(timings, 0.95),
        "total_seconds": totals.total_seconds,
        "samples": len(timings),
        "memory": {
            "samples": totals.mem_samples,
            "median_peak_bytes": int(statistics.median(peaks)) if peaks else None,
            "mean_peak_bytes": (
                int(totals.mem_peak_sum / totals.mem_samples) if totals.mem_samples else None
            ),
            "max_peak_bytes": totals.mem_peak_max if totals.mem_samples else None,
        },
    }


def _system_status(mon: Monitor, store: TelemetryStore | None) -> tuple[dict[str, Any], str]:
    status = mon.status()
    if status is not None and mon.names():  # this process ran routed calls: its status counts
        return status, "this process"
    if store is not None:
        stored = store.meta("system")
        if isinstance(stored, dict) and "level" in stored:
            return {"level": stored.get("level"), "active": stored.get("active", [])}, (
                f"last run ({stored.get('run')})"
            )
    return {"level": None, "active": None}, "not recorded by the runs"


def build_report(
    *,
    run: str | None = None,
    threshold_percent: float = 10.0,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    """Everything the monitor knows, as a JSON-ready dict.

    Keys: ``functions`` (per optimization and path: calls, errors, fallbacks, error_rate, mean /
    median / p95 / total seconds, memory), ``top_performers`` ([{function, improvement_percent,
    speedup, time_saved_seconds}], best first), ``performance_regressions`` (alerts as dicts),
    ``system`` (level, active and disabled optimizations, total time saved, adoption, store) and
    ``recommendations`` (sentences). `run`: None for all stored runs, or a run id (the mixin uses
    the current run). Means and totals cover every call; medians and p95 the newest
    ``max_samples`` clean calls.
    """
    mon = monitor or get_monitor()
    mon.flush()
    s = mon.settings
    store = mon.usable_store()
    use_store = store is not None and store.exists()
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    if use_store:
        totals = {(t.name, t.path): t for t in store.totals(run)}
        names = sorted({name for name, _ in totals})
        for name in names:
            rows[name] = {
                path: _path_report(
                    totals.get((name, path), Totals(name, path)),
                    store.timings(name, path, limit=s.max_samples, run=run),
                    store.peaks(name, path, limit=s.max_samples, run=run),
                )
                for path in PATHS
            }
    else:
        for name, per in sorted(mon.local_view().items()):
            if sum(totals.calls for totals, _, _ in per.values()) == 0:
                continue
            rows[name] = {path: _path_report(*per[path]) for path in PATHS}

    disabled_now = mon.disabled()
    functions: list[dict[str, Any]] = []
    total_saved: float | None = None
    for name, per in rows.items():
        opt, orig = per["optimized"], per["original"]
        calls = opt["calls"] + orig["calls"]
        entry: dict[str, Any] = {
            "function": name,
            "adoption_rate": opt["calls"] / calls if calls else None,
            "speedup": None,
            "improvement_percent": None,
            "time_saved_seconds": None,
            "disabled": disabled_now.get(name),
            "optimized": opt,
            "original": orig,
        }
        enough = min(opt["samples"], orig["samples"]) >= s.report_min_samples
        m_opt, m_orig = opt["median_seconds"], orig["median_seconds"]
        if enough and m_opt and m_orig:
            entry["speedup"] = m_orig / m_opt
            entry["improvement_percent"] = (1 - m_opt / m_orig) * 100
            saved = (opt["calls"] - opt["errors"]) * (m_orig - m_opt)
            entry["time_saved_seconds"] = saved
            total_saved = (total_saved or 0.0) + saved
        functions.append(entry)

    regressions = detect_performance_regressions(
        threshold_percent, monitor=mon, names=set(rows), notify=False
    )
    status, status_source = _system_status(mon, store)
    active = status.get("active")
    if active is None:
        active, status_source_active = (
            sorted(f["function"] for f in functions
                   if f["optimized"]["calls"] and not f["disabled"]),
            "observed",
        )
    else:
        status_source_active = status_source
    all_calls = sum(f["optimized"]["calls"] + f["original"]["calls"] for f in functions)
    opt_calls = sum(f["optimized"]["calls"] for f in functions)
    runs = store.runs() if use_store else []
    this_run = next((r for r in runs if r["run"] == (run or (runs[0]["run"] if runs else None))),
                    None)
    rate = s.memory_sample_rate
    system = {
        "scope": "all runs" if run is None else f"run {run}",
        "level": status.get("level"),
        "level_source": status_source,
        "optimizations_active": active,
        "active_source": status_source_active,
        "optimizations_disabled": disabled_now,
        "total_time_saved_seconds": total_saved,
        "total_calls": all_calls,
        "optimized_calls": opt_calls,
        "adoption_rate": opt_calls / all_calls if all_calls else None,
        "functions": len(functions),
        "runs": len(runs),
        "processes_in_run": this_run["processes"] if this_run else None,
        "memory_sampling": (
            f"at most 1 call in {max(1, round(1 / rate))} per optimization and process, within "
            f"{100 * s.memory_budget:g}% of its time (traced calls are not timed)"
            if rate > 0 and s.memory_budget > 0 else f"off ({ENV_PREFIX}MEMORY_SAMPLE_RATE=0)"
        ),
        "store": {
            "path": str(mon.store_path()),
            "persist": s.persist,
            "available": use_store,
            "problem": mon.store().problem if mon.store() is not None else None,
            "size_bytes": store.size_bytes() if use_store else 0,
            "max_store_mb": s.max_store_mb,
        },
    }
    top = sorted(
        (
            {
                "function": f["function"],
                "improvement_percent": f["improvement_percent"],
                "speedup": f["speedup"],
                "time_saved_seconds": f["time_saved_seconds"],
            }
            for f in functions
            if f["improvement_percent"] is not None and f["improvement_percent"] > 0
        ),
        key=lambda item: item["improvement_percent"],
        reverse=True,
    )
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "system": system,
        "functions": functions,
        "top_performers": top,
        "performance_regressions": [a.as_dict() for a in regressions],
        "recommendations": _recommendations(functions, regressions, system, s),
    }


def _recommendations(
    functions: list[dict[str, Any]],
    regressions: list[RegressionAlert],
    system: dict[str, Any],
    settings: MonitorSettings,
) -> list[str]:
    out = [alert.recommendation for alert in regressions]
    store = system["store"]
    if store["problem"]:
        out.append(
            f"The telemetry store {store['path']} is unusable ({store['problem']}): only this "
            "process's calls are shown. `freqtrade-opt reset` starts a new store."
        )
    for f in functions:
        name, opt, orig = f["function"], f["optimized"], f["original"]
        if f["disabled"]:
            out.append(
                f"'{name}' is switched off ({f['disabled']}). After fixing the cause (e.g. an "
                f"upgrade), `freqtrade-opt reset {name}` re-enables it."
            )
        elif opt["errors"]:
            out.append(
                f"'{name}' raised {opt['errors']} error(s) on the optimized path; the original's "
                "result was used each time. Please report it with the log's traceback."
            )
        if opt["calls"] and orig["samples"] < settings.report_min_samples and not f["disabled"]:
            out.append(
                f"'{name}' has too few timings of the original path to measure its gain: run once "
                f"with FREQTRADE_OPT_{name.upper()}_PERCENTAGE=50 to collect a baseline."
            )
        m_opt, m_orig = opt["memory"]["median_peak_bytes"], orig["memory"]["median_peak_bytes"]
        if m_opt and m_orig and m_opt > 1.5 * m_orig:
            out.append(
                f"'{name}' allocates {m_opt / m_orig:.1f}x the original's peak memory "
                f"({m_opt / 2**20:.1f} MiB vs {m_orig / 2**20:.1f} MiB): watch memory with many "
                "hyperopt workers."
            )
    if not functions:
        out.append(
            "No routed calls recorded yet: run a backtest or hyperopt with the plugin active."
        )
    elif not out:
        out.append(
            "Nothing to do: every measured optimization is at least as fast as the original."
        )
    return out


# -- formatting -----------------------------------------------------------------------------------


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def fmt_percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


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
                    r["function"], r["kind"], fmt_percent(r["degradation_percent"], signed=True),
                    fmt_seconds(r["current_median"]), fmt_seconds(r["reference_median"]),
                    f"{r['samples']}/{r['reference_samples']}",
                )
                for r in regressions
            ],
            ("Optimization", "Compared with", "Slower by", "Median now", "Reference", "Samples"),
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


# -- Prometheus -----------------------------------------------------------------------------------


def _label(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return f'"{text}"'


def _labels(**labels: Any) -> str:
    return "{" + ",".join(f"{k}={_label(v)}" for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def prometheus_text(report: dict[str, Any]) -> str:
    """The report in the Prometheus text exposition format (version 0.0.4)."""
    families: dict[str, tuple[str, str, list[str]]] = {}

    def add(metric: str, kind: str, help_text: str, labels: dict[str, Any], value: Any,
            sample: str | None = None) -> None:
        if value is None:
            return
        family = families.setdefault(metric, (kind, help_text, []))
        name = sample or metric
        family[2].append(f"{name}{_labels(**labels) if labels else ''} {_number(value)}")

    p = "freqtrade_opt_"
    for f in report["functions"]:
        fn = f["function"]
        for path in PATHS:
            s = f[path]
            lab = {"function": fn, "path": path}
            add(p + "calls_total", "counter", "Routed calls per optimization and path.", lab,
                s["calls"])
            add(p + "errors_total", "counter", "Calls that raised on this path.", lab, s["errors"])
            add(p + "fallbacks_total", "counter",
                "Optimized calls that fell back to the original.", lab, s["fallbacks"])
            add(p + "call_seconds_total", "counter",
                "Wall time spent in routed calls (all calls).", lab, s["total_seconds"])
            summary = p + "call_duration_seconds"
            help_summary = ("Duration of clean routed calls (quantiles over the newest stored "
                            "calls; no errors, no memory-traced calls).")
            for q, key in (("0.5", "median_seconds"), ("0.95", "p95_seconds")):
                add(summary, "summary", help_summary, {**lab, "quantile": q}, s[key])
            if s["timed_calls"]:
                add(summary, "summary", help_summary, lab, s["timed_seconds"],
                    sample=summary + "_sum")
                add(summary, "summary", help_summary, lab, s["timed_calls"],
                    sample=summary + "_count")
            mem = s["memory"]
            add(p + "memory_peak_bytes", "gauge",
                "Median peak traced allocation of memory-sampled calls.", lab,
                mem["median_peak_bytes"])
            add(p + "memory_peak_max_bytes", "gauge",
                "Largest peak traced allocation of memory-sampled calls.", lab,
                mem["max_peak_bytes"])
            add(p + "memory_samples_total", "counter", "Memory-sampled calls.", lab,
                mem["samples"])
        lab = {"function": fn}
        add(p + "adoption_ratio", "gauge", "Share of calls on the optimized path.", lab,
            f["adoption_rate"])
        add(p + "speedup_ratio", "gauge", "Original median time / optimized median time.", lab,
            f["speedup"])
        add(p + "time_saved_seconds", "gauge",
            "Estimated time saved: optimized calls x (original - optimized median).", lab,
            f["time_saved_seconds"])
        add(p + "disabled", "gauge", "1 when the optimization is auto-disabled.",
            {**lab, "reason": (f["disabled"] or "")[:200]}, 1 if f["disabled"] else 0)
    for r in report["performance_regressions"]:
        add(p + "regression_degradation_percent", "gauge",
            "Detected slowdown of the optimized path (percent).",
            {"function": r["function"], "kind": r["kind"]}, r["degradation_percent"])
    system = report["system"]
    add(p + "regressions", "gauge", "Number of detected performance regressions.", {},
        len(report["performance_regressions"]))
    add(p + "total_time_saved_seconds", "gauge", "Estimated total time saved.", {},
        system["total_time_saved_seconds"])
    add(p + "store_size_bytes", "gauge", "Size of the telemetry store.", {},
        system["store"]["size_bytes"])
    add(p + "info", "gauge", "Optimization level (label) of the last run.",
        {"level": system["level"] or "unknown"}, 1)
    lines = []
    for metric, (kind, help_text, samples) in families.items():
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} {kind}")
        lines.extend(samples)
    return "\n".join(lines) + "\n"


def write_prometheus(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `prometheus_text(report)` to `path` atomically (temporary file + rename)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a directory; give a file name such as "
                                f"{target / 'freqtrade_opt.prom'}")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(prometheus_text(report))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


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
    elif not args.prometheus:
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


def register_cli(subparsers: Any) -> None:
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
    report.add_argument("--threshold", type=float, default=10.0, metavar="PERCENT",
                        help="Slowdown reported as a regression (default: 10).")
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
