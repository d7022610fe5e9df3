"""``freqtrade-opt report --html PATH``: one self-contained page with the report's trends.

Charts (plotly, the library Freqtrade's own plots use; its JavaScript is embedded, so the page
works offline and can be mailed): speedup per optimization across runs, time saved per run,
adoption, errors and fallbacks; regressions and auto-disables are marked on the runs that showed
them, and every run's x label carries its level. Below: the alerts and recommendations as text.
Needs plotly (``pip install plotly``, also in ``freqtrade[plot]``).
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import Any

from freqtrade_opt_plugin.telemetry.fmt import fmt_percent, fmt_ratio, fmt_seconds


CHART_IDS = ("speedup", "time-saved", "adoption", "errors")


def _run_labels(runs: list[dict[str, Any]]) -> list[str]:
    labels = []
    for i, run in enumerate(runs, 1):
        when = time.strftime("%m-%d %H:%M:%S", time.localtime(run["started"]))
        labels.append(f"#{i} {when}<br>{run['level'] or 'level ?'}")
    return labels


def _series(runs: list[dict[str, Any]], name: str, key: str, scale: float = 1.0) -> list:
    out = []
    for run in runs:
        value = run["optimizations"].get(name, {}).get(key)
        out.append(None if value is None else value * scale)
    return out


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """chart id -> plotly Figure, from `build_report`'s ``runs``."""
    import plotly.graph_objects as go

    runs = report.get("runs") or []
    labels = _run_labels(runs)
    names = sorted({n for run in runs for n in run["optimizations"]})
    layout = {"template": "plotly_white", "height": 360, "margin": {"t": 50, "b": 80},
              "legend": {"orientation": "h", "y": -0.3}}
    measures = {d.get("measure") for run in runs for d in run["optimizations"].values()}
    measure = "thread CPU time" if measures == {"thread CPU time"} else "time"
    speedup = go.Figure(layout={**layout, "title": "Speedup per optimization (original / "
                                f"optimized mean {measure} per call; > 1 is faster)",
                                "yaxis": {"title": "speedup (x)"}})
    saved = go.Figure(layout={**layout, "title": f"Time saved per run ({measure}, seconds)",
                              "barmode": "relative", "yaxis": {"title": "seconds"}})
    adoption = go.Figure(layout={**layout, "title": "Adoption: share of calls on the optimized "
                                 "path (%)", "yaxis": {"title": "%", "range": [0, 105]}})
    errors = go.Figure(layout={**layout, "title": "Errors and fallbacks per run",
                               "barmode": "group", "yaxis": {"title": "calls"}})
    for name in names:
        speedup.add_scatter(x=labels, y=_series(runs, name, "speedup"), name=name,
                            mode="lines+markers", connectgaps=False)
        saved.add_bar(x=labels, y=_series(runs, name, "time_saved_seconds"), name=name)
        adoption.add_scatter(x=labels, y=_series(runs, name, "adoption_rate", 100.0), name=name,
                             mode="lines+markers")
        errors.add_bar(x=labels, y=_series(runs, name, "errors"), name=f"{name} errors")
        errors.add_bar(x=labels, y=_series(runs, name, "fallbacks"), name=f"{name} fallbacks")
    marks: dict[str, tuple[list, list, list]] = {"regression": ([], [], []),
                                                 "auto-disabled": ([], [], [])}
    for label, run in zip(labels, runs, strict=True):
        for name, data in run["optimizations"].items():
            y = data.get("speedup") or 1.0
            if data.get("regression"):
                xs, ys, texts = marks["regression"]
                xs.append(label)
                ys.append(y)
                texts.append(f"{name}: {', '.join(data['regression'])}")
            if data.get("disabled"):
                xs, ys, texts = marks["auto-disabled"]
                xs.append(label)
                ys.append(y)
                texts.append(f"{name}: {data['disabled']}")
    for kind, (xs, ys, texts) in marks.items():
        if xs:
            speedup.add_scatter(
                x=xs, y=ys, text=texts, name=kind, mode="markers", hoverinfo="text+x",
                marker={"symbol": "x" if kind == "regression" else "square-open", "size": 16,
                        "color": "#d62728" if kind == "regression" else "#222"},
            )
    speedup.add_hline(y=1.0, line_dash="dot", line_color="#888")
    return {"speedup": speedup, "time-saved": saved, "adoption": adoption, "errors": errors}


def _table(report: dict[str, Any]) -> str:
    rows = []
    for f in report["functions"]:
        status = f"disabled: {f['disabled']}" if f["disabled"] else (
            "active" if f["optimized"]["calls"] else "original only")
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
                f["function"], f["optimized"]["calls"], f["original"]["calls"],
                fmt_percent(None if f["adoption_rate"] is None else 100 * f["adoption_rate"]),
                fmt_ratio(f["speedup"]), fmt_seconds(f["time_saved_seconds"]),
                f["optimized"]["errors"], status,
            )) + "</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("Optimization", "Optimized calls", "Original calls",
                                              "Adoption", "Speedup", "Time saved", "Errors",
                                              "Status"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ddd;
padding: 4px 8px; text-align: right; } th { background: #f4f4f4; }
.chart { margin: 1em 0; } .alert { color: #a40000; } .muted { color: #666; }
"""


def render_html(report: dict[str, Any]) -> str:
    """The page as one string (plotly.js inlined once)."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    system = report["system"]
    charts = []
    for chart_id, figure in figures(report).items():
        charts.append('<div class="chart">' + pio.to_html(
            figure, full_html=False, include_plotlyjs=False, div_id=f"chart-{chart_id}",
            config={"displaylogo": False, "responsive": True},
        ) + "</div>")
    alerts = "".join(
        f'<li class="alert">{html.escape(a["recommendation"])}</li>'
        for a in report["performance_regressions"]
    ) or "<li>none</li>"
    advice = "".join(f"<li>{html.escape(line)}</li>" for line in report["recommendations"])
    saved = system["total_time_saved_seconds"]
    summary = (
        f"Level {html.escape(str(system['level']))} ({html.escape(system['level_source'])}) · "
        f"{system['runs']} stored run(s) · {system['total_calls']} routed calls · time saved "
        f"{fmt_seconds(saved) if saved is not None else 'not measured'}"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>freqtrade-opt report</title>
<style>{_STYLE}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>freqtrade-opt report</h1>
<p class="muted">Generated {html.escape(report['generated_at'])} · {html.escape(system['scope'])}
· store {html.escape(system['store']['path'])}</p>
<p>{summary}</p>
{_table(report)}
{''.join(charts)}
<h2>Regressions</h2><ul>{alerts}</ul>
<h2>Recommendations</h2><ul>{advice}</ul>
</body></html>
"""


def write_html(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `render_html(report)` to `path` atomically (temporary file + rename)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a directory; give a file name such as "
                                f"{target / 'freqtrade_opt_report.html'}")
    text = render_html(report)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
