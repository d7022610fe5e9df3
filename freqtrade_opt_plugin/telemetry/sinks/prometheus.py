"""Prometheus text exposition format (version 0.0.4) of a report, written atomically.

For node-exporter's textfile collector: point ``freqtrade-opt report --prometheus PATH`` at a
``*.prom`` file in the collector's directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from freqtrade_opt_plugin.telemetry.counters import PATHS


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
