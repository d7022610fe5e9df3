"""The report as a JSON-ready dict: what the tables, ``--json``, Prometheus, OpenTelemetry and
the HTML page all read.

`build_report` keys: ``functions`` (per optimization and path: calls, errors, fallbacks, mean /
median / p95 / total seconds, thread CPU time, memory), ``top_performers``,
``performance_regressions`` (alerts as dicts), ``system`` (level, active and disabled
optimizations, total time saved, adoption, store), ``runs`` (per stored run, oldest first: level
and per optimization its calls, speedup and time saved: the trends of the HTML page) and
``recommendations``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from freqtrade_opt_plugin.telemetry.analysis import RegressionAlert
from freqtrade_opt_plugin.telemetry.counters import PATHS, quantile
from freqtrade_opt_plugin.telemetry.settings import ENV_PREFIX, MonitorSettings
from freqtrade_opt_plugin.telemetry.store import RunData, TelemetryStore, Totals


if TYPE_CHECKING:
    from freqtrade_opt_plugin.telemetry.recorder import Monitor


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _path_report(
    totals: Totals, timings: list[float], peaks: list[int], cpu: list[float] | None = None,
) -> dict[str, Any]:
    return {
        "calls": totals.calls,
        "errors": totals.errors,
        "fallbacks": totals.fallbacks,
        "error_rate": totals.errors / totals.calls if totals.calls else None,
        "timed_calls": totals.timed_calls,
        "timed_seconds": totals.timed_seconds,
        "mean_seconds": totals.timed_seconds / totals.timed_calls if totals.timed_calls else None,
        "median_seconds": _median(timings),
        "p95_seconds": quantile(timings, 0.95),
        "total_seconds": totals.total_seconds,
        "samples": len(timings),
        "cpu_calls": totals.cpu_calls,
        "cpu_seconds": totals.cpu_seconds,
        "cpu_median_seconds": _median(cpu or []),
        "memory": {
            "samples": totals.mem_samples,
            "median_peak_bytes": int(np.median(peaks)) if peaks else None,
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


def _mean(totals: Totals | None, cpu: bool) -> float | None:
    """Mean time per clean call: thread CPU time (`cpu`) or wall time."""
    if totals is None:
        return None
    if cpu:
        return totals.cpu_seconds / totals.cpu_calls if totals.cpu_calls else None
    return totals.timed_seconds / totals.timed_calls if totals.timed_calls else None


def _has_cpu(history: list[RunData]) -> bool:
    """Whether these runs' calls carry CPU times (the Router measures them on a uniform sample)."""
    found = [t for run in history for t in run.totals.values() if t.timed_calls]
    return bool(found) and all(t.cpu_calls > 0 for t in found)


def run_trends(mon: Monitor, names: list[str], alerts: list[RegressionAlert],
               disabled: dict[str, str]) -> list[dict[str, Any]]:
    """Per stored run (oldest first): level and, per optimization that ran, its figures.

    Speedup and time saved use the mean thread CPU time per clean call (``measure``; wall time
    for records without CPU times, load inflates it), hits and misses of a cache together; the
    original's mean comes from the same run when it ran there (``reference: "same run"``), else
    from all stored runs (``"other runs"``).
    """
    s = mon.settings
    histories = {name: mon.history(name, runs=s.max_runs) for name in names}
    runs: dict[str, dict[str, Any]] = {}
    for name, history in histories.items():
        cpu = _has_cpu(history)
        pooled = Totals(name, "original")
        for run in history:
            t = run.totals.get("original")
            if t is not None:
                pooled.timed_calls += t.timed_calls
                pooled.timed_seconds += t.timed_seconds
                pooled.cpu_calls += t.cpu_calls
                pooled.cpu_seconds += t.cpu_seconds
        for run in history:
            entry = runs.setdefault(run.run, {
                "run": run.run, "started": run.started,
                "level": (run.system or {}).get("level"), "optimizations": {},
            })
            opt, orig = run.totals.get("optimized"), run.totals.get("original")
            same = orig is not None and orig.timed_calls >= s.report_min_samples
            m_opt, m_orig = _mean(opt, cpu), _mean(orig if same else pooled, cpu)
            enough = opt is not None and opt.timed_calls and m_orig is not None
            calls = (opt.calls if opt else 0) + (orig.calls if orig else 0)
            entry["optimizations"][name] = {
                "optimized_calls": opt.calls if opt else 0,
                "original_calls": orig.calls if orig else 0,
                "adoption_rate": (opt.calls if opt else 0) / calls if calls else None,
                "errors": (opt.errors if opt else 0) + (orig.errors if orig else 0),
                "fallbacks": (opt.fallbacks if opt else 0) + (orig.fallbacks if orig else 0),
                "speedup": m_orig / m_opt if enough and m_opt else None,
                "time_saved_seconds": (
                    opt.timed_calls * (m_orig - m_opt) if enough and m_opt is not None else None
                ),
                "reference": ("same run" if same else "other runs") if enough else None,
                "measure": "thread CPU time" if cpu else "wall time",
                "regression": [a.kind for a in alerts if a.function == name and run.run in a.runs],
            }
    ordered = sorted(runs.values(), key=lambda r: (r["started"], r["run"]))
    for name, reason in disabled.items():  # marked at the newest run its optimized path ran
        for entry in reversed(ordered):
            if entry["optimizations"].get(name, {}).get("optimized_calls"):
                entry["optimizations"][name]["disabled"] = reason
                break
    return ordered


def build_report(
    *,
    run: str | None = None,
    threshold_percent: float | None = None,
    monitor: Monitor,
) -> dict[str, Any]:
    """Everything the monitor knows, as a JSON-ready dict (keys: module doc).

    `run`: None for all stored runs, or a run id (the mixin uses the current run). Means and
    totals cover every call; medians and p95 the newest ``max_samples`` clean calls.
    """
    mon = monitor
    mon.flush()
    s = mon.settings
    store = mon.usable_store()
    use_store = store is not None and store.exists()
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    if use_store:
        totals = {(t.name, t.path): t for t in store.totals(run)}
        for name in sorted({name for name, _ in totals}):
            rows[name] = {
                path: _path_report(
                    totals.get((name, path), Totals(name, path)),
                    store.timings(name, path, limit=s.max_samples, run=run),
                    store.peaks(name, path, limit=s.max_samples, run=run),
                    store.cpu(name, path, limit=s.max_samples, run=run),
                )
                for path in PATHS
            }
    else:
        for name, per in sorted(mon.local_view().items()):
            if sum(totals.calls for totals, _, _ in per.values()) == 0:
                continue
            cpu = mon.local_cpu(name)
            rows[name] = {path: _path_report(*per[path], cpu[path]) for path in PATHS}

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
        entry["speedup_measure"] = "median wall time"
        if min(opt["cpu_calls"], orig["cpu_calls"]) >= s.report_min_samples and (
            opt["cpu_median_seconds"] and orig["cpu_median_seconds"]
        ):  # thread CPU time: what load moves little (wall time under load: preemptions)
            m_opt, m_orig = opt["cpu_median_seconds"], orig["cpu_median_seconds"]
            entry["speedup_measure"] = "median thread CPU time"
        if enough and m_opt and m_orig:
            entry["speedup"] = m_orig / m_opt
            entry["improvement_percent"] = (1 - m_opt / m_orig) * 100
            saved = (opt["calls"] - opt["errors"]) * (m_orig - m_opt)
            entry["time_saved_seconds"] = saved
            total_saved = (total_saved or 0.0) + saved
        functions.append(entry)

    regressions = mon.detect_regressions(names=set(rows), threshold_percent=threshold_percent)
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
    trends = run_trends(mon, list(rows), regressions, disabled_now)
    if run is not None:
        trends = [r for r in trends if r["run"] == run]
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "system": system,
        "functions": functions,
        "top_performers": top,
        "performance_regressions": [a.as_dict() for a in regressions],
        "runs": trends,
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


__all__ = ["RunData", "build_report", "run_trends"]
