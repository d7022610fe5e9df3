"""Is an optimization still worth it? Regressions across runs and the performance gate.

Everything here judges measures that the machine's load moves little, and only from runs in
which the compared paths actually ran:

* **thread CPU time per call** (``time.thread_time`` around the call: time the calling thread
  spent on a CPU, not time it waited for one), falling back to wall time for records that carry
  no CPU time (the measure is named in every alert);
* **paired ratios**: in a run where both paths ran (a rollout below 100%, shadow mode), the
  optimized/original ratio of their medians; both paths share the run's machine and inputs, so
  load and workload size cancel out.

`slower_than_baseline` (a step across runs, as asv finds them): the per-run values of the newest
``history_runs`` runs are split into "before" and "after" at the point that best fits two
constant levels (least absolute deviations). The value of a run is the paired ratio when every
compared run has both paths. Without pairs only the optimized path's absolute CPU time exists,
which load alone moved by 50-140% in single runs of our tests: it raises no alert unless
``unpaired_alerts`` is set (a dedicated machine), then from ``unpaired_threshold_percent``. A
regression is reported only when the step is persistent and large: at least ``persist_runs``
runs after it (ending with the latest) and ``baseline_runs`` before, the median after at least
``threshold_percent`` above the median before, *every* run after slower than *every* run before,
and a one-sided Mann-Whitney test of the after-runs' calls against the before-runs' calls
significant at ``alpha``. So a lasting slowdown is reported at the end of its
``persist_runs``-th run; one slow run (a busy machine) is not; a run at level disabled (no
optimized calls) is no evidence either way.

`slower_than_original`: within the latest run, the optimized path's calls against the original's
(both needed: ``min_samples`` each), median ratio above ``1 + threshold`` and a significant rank
test of optimized > (1 + threshold) x original.

The performance gate judges what an optimization costs in total: the mean CPU time per clean
call of each path over the stored runs (a cache's misses and hits together), needs
``opt.min_samples`` calls per path and optimized calls from at least ``gate_runs`` runs (2 for
caches: a cold run's misses are an investment the next run's hits repay), and switches off only
when the ratio exceeds ``opt.performance_threshold`` with a significant one-sided Welch t-test.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from freqtrade_opt_plugin.telemetry.fmt import fmt_seconds
from freqtrade_opt_plugin.telemetry.settings import MonitorSettings
from freqtrade_opt_plugin.telemetry.store import RunData


if TYPE_CHECKING:
    from freqtrade_opt_plugin.registry import Optimization

CPU, WALL = "thread CPU time per call", "wall time per call"
RATIO = "optimized/original ratio of "


@dataclass(frozen=True)
class RegressionAlert:
    """An optimization that got slower, with the evidence and what to do about it.

    `kind`: ``slower_than_original`` (optimized vs original calls of the same run),
    ``slower_than_baseline`` (a lasting step across runs) or ``performance_gate`` (the gate
    switched it off). `measure`: what was compared; `runs`: the runs that show the slowdown;
    `reference_runs`: the runs it is compared with.
    """

    function: str
    degradation_percent: float
    recommendation: str
    kind: str = "slower_than_original"
    current_median: float | None = None
    reference_median: float | None = None
    samples: int = 0
    reference_samples: int = 0
    p_value: float | None = None
    measure: str | None = None
    runs: tuple[str, ...] = field(default_factory=tuple)
    reference_runs: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunPoint:
    """One run's value of a measure, with the calls behind it (normalized like the value)."""

    run: str
    started: float
    value: float
    calls: np.ndarray
    source: str  # "cpu" or "wall"


def _source(run: RunData, paths: Sequence[str], minimum: int) -> tuple[str, list] | None:
    """("cpu" | "wall", [samples per path]) of `run`: CPU times when every path has enough."""
    for source, per_path in (("cpu", run.cpu), ("wall", run.wall)):
        values = [per_path.get(p, []) for p in paths]
        if all(len(v) >= minimum for v in values):
            return source, values
    return None


def run_points(history: Sequence[RunData], measure: str, minimum: int) -> list[RunPoint]:
    """Per-run values of `measure` ("ratio" or "optimized"), oldest first, runs with the data."""
    points = []
    for run in history:
        if measure == "ratio":
            found = _source(run, ("optimized", "original"), minimum)
            if found is None:
                continue
            source, (fast, base) = found
            reference = float(np.median(base))
            if reference <= 0:
                continue
            calls = np.asarray(fast, dtype=float) / reference
        else:
            found = _source(run, ("optimized",), minimum)
            if found is None:
                continue
            source, (fast,) = found
            calls = np.asarray(fast, dtype=float)
        points.append(RunPoint(run.run, run.started, float(np.median(calls)), calls, source))
    return points


def _describe(measure: str, source: str) -> str:
    unit = CPU if source == "cpu" else WALL
    return RATIO + unit if measure == "ratio" else "optimized " + unit


def detect_step(
    points: Sequence[RunPoint], settings: MonitorSettings, threshold_percent: float
) -> dict[str, Any] | None:
    """The evidence of a lasting slowdown at the end of `points` (rules: module doc), or None."""
    if not points:
        return None
    latest_source = points[-1].source
    points = [p for p in points if p.source == latest_source]  # never compare CPU with wall
    n, persist, baseline = len(points), settings.persist_runs, settings.baseline_runs
    if n < persist + baseline:
        return None
    values = np.array([p.value for p in points])
    best: tuple[float, int] | None = None
    for k in range(persist, n - baseline + 1):
        before, after = values[: n - k], values[n - k :]
        cost = float(np.abs(before - np.median(before)).sum()
                     + np.abs(after - np.median(after)).sum())
        if best is None or cost < best[0]:
            best = (cost, k)
    assert best is not None
    k = best[1]
    before, after = values[: n - k], values[n - k :]
    reference, current = float(np.median(before)), float(np.median(after))
    if reference <= 0 or (current / reference - 1) * 100 < threshold_percent:
        return None
    if after.min() <= before.max():
        return None  # not every slowed run is slower than every earlier run: not persistent
    now = np.concatenate([p.calls for p in points[n - k :]])
    earlier = np.concatenate([p.calls for p in points[: n - k]])
    from scipy import stats as sps  # imported on first use: not on a backtest's start-up path

    p_value = float(sps.mannwhitneyu(now, earlier, alternative="greater").pvalue)
    if p_value >= settings.alpha:
        return None
    return {
        "degradation_percent": round((current / reference - 1) * 100, 2),
        "current_median": current,
        "reference_median": reference,
        "samples": int(now.size),
        "reference_samples": int(earlier.size),
        "p_value": p_value,
        "runs": tuple(p.run for p in points[n - k :]),
        "reference_runs": tuple(p.run for p in points[: n - k]),
    }


def across_runs(
    name: str, history: Sequence[RunData], settings: MonitorSettings, threshold_percent: float,
    *, current_run: str | None = None,
) -> RegressionAlert | None:
    """A `slower_than_baseline` alert for `name`, judged on the paired ratio when every run
    compared has both paths, else on the optimized path's CPU time. With `current_run`, only a
    slowdown that includes that run (the run ending now) is reported."""
    minimum = settings.run_min_samples
    optimized = run_points(history, "optimized", minimum)
    if not optimized or (current_run is not None and optimized[-1].run != current_run):
        return None  # the optimized path did not run in the run being judged
    ratio = run_points(history, "ratio", minimum)
    window = settings.persist_runs + settings.baseline_runs
    paired = len(ratio) >= window and [p.run for p in ratio[-window:]] == [
        p.run for p in optimized[-window:]
    ]
    measure, points = ("ratio", ratio) if paired else ("optimized", optimized)
    if not paired:  # the machine's load moves an absolute measure: off, or only a large step
        if not settings.unpaired_alerts:
            return None
        threshold_percent = max(threshold_percent, settings.unpaired_threshold_percent)
    step = detect_step(points, settings, threshold_percent)
    if step is None:
        return None
    described = _describe(measure, points[-1].source)
    runs, earlier = step["runs"], step["reference_runs"]
    shown = (fmt_seconds if measure == "optimized" else "{:.3g}".format)
    env = "FREQTRADE_OPT_" + name.upper()
    text = (
        f"'{name}': the {described} rose {step['degradation_percent']:.0f}% and stayed there for "
        f"{len(runs)} runs ({runs[0]} .. {runs[-1]}): median {shown(step['current_median'])} vs "
        f"{shown(step['reference_median'])} in the {len(earlier)} runs before ({earlier[0]} .. "
        f"{earlier[-1]}). Expected after a change of data size, Freqtrade, pandas or the "
        f"plugin; otherwise run `freqtrade-opt bench` and, if the optimization is no longer "
        f"faster than the original, set {env}=false."
    )
    return RegressionAlert(function=name, recommendation=text, kind="slower_than_baseline",
                           measure=described, **step)


def within_run(
    name: str, run: RunData | None, settings: MonitorSettings, threshold_percent: float,
) -> RegressionAlert | None:
    """A `slower_than_original` alert: optimized vs original calls of the same run."""
    if run is None:
        return None
    found = _source(run, ("optimized", "original"), settings.min_samples)
    if found is None:
        return None
    source, (fast, base) = found
    current = np.asarray(fast[-settings.recent :], dtype=float)
    reference = np.asarray(base[-settings.recent :], dtype=float)
    factor = 1 + threshold_percent / 100
    m_cur, m_ref = float(np.median(current)), float(np.median(reference))
    if m_ref <= 0 or m_cur / m_ref <= factor:
        return None
    from scipy import stats as sps

    p_value = float(sps.mannwhitneyu(current, reference * factor, alternative="greater").pvalue)
    if p_value >= settings.alpha:
        return None
    degradation = round((m_cur / m_ref - 1) * 100, 2)
    env = "FREQTRADE_OPT_" + name.upper()
    measure = CPU if source == "cpu" else WALL
    text = (
        f"'{name}': in run {run.run} the optimized path took {degradation:.0f}% more "
        f"{measure.replace(' per call', '')} than the original on the same run's calls (median "
        f"{fmt_seconds(m_cur)} vs {fmt_seconds(m_ref)}). Turn it off with {env}=false and report "
        "it; its performance gate switches it off automatically once the ratio passes its "
        "threshold."
    )
    return RegressionAlert(
        function=name, degradation_percent=degradation, recommendation=text,
        kind="slower_than_original", current_median=m_cur, reference_median=m_ref,
        samples=int(current.size), reference_samples=int(reference.size), p_value=p_value,
        measure=measure, runs=(run.run,), reference_runs=(run.run,),
    )


@dataclass(frozen=True)
class GateVerdict:
    """The gate's figures for one optimization (`reason` None: it passes or cannot judge yet)."""

    reason: str | None
    ratio: float | None = None
    measure: str | None = None


def _path_cost(history: Sequence[RunData], path: str, use_cpu: bool) -> tuple[float, int, list]:
    seconds, calls, samples = 0.0, 0, []
    for run in history:
        totals = run.totals.get(path)
        if totals is None:
            continue
        if use_cpu:
            seconds, calls = seconds + totals.cpu_seconds, calls + totals.cpu_calls
            samples.extend(run.cpu.get(path, []))
        else:
            seconds, calls = seconds + totals.timed_seconds, calls + totals.timed_calls
            samples.extend(run.wall.get(path, []))
    return seconds, calls, samples


def gate(opt: Optimization, history: Sequence[RunData], settings: MonitorSettings) -> GateVerdict:
    """Whether `opt` costs more than ``performance_threshold`` x the original (module doc)."""
    runs_with = [r for r in history if (t := r.totals.get("optimized")) and t.timed_calls]
    if len(runs_with) < max(1, int(getattr(opt, "gate_runs", 1))):
        return GateVerdict(None)
    use_cpu = all(  # CPU time is measured on a uniform sample of the calls (see `counters`)
        (t := r.totals.get(p)) is None or not t.timed_calls or t.cpu_calls > 0
        for r in history for p in ("optimized", "original")
    )
    fast_s, fast_n, fast = _path_cost(history, "optimized", use_cpu)
    base_s, base_n, base = _path_cost(history, "original", use_cpu)
    if min(fast_n, base_n, len(fast), len(base)) < opt.min_samples:
        return GateVerdict(None)
    mean_fast, mean_base = fast_s / fast_n, base_s / base_n
    if mean_base <= 0:
        return GateVerdict(None)
    ratio = mean_fast / mean_base
    threshold = opt.performance_threshold
    measure = "mean " + (CPU if use_cpu else WALL)
    if ratio <= threshold:
        return GateVerdict(None, ratio, measure)
    from scipy import stats as sps

    with warnings.catch_warnings():  # identical samples: NaN p-value, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(sps.ttest_ind(np.asarray(fast, dtype=float),
                                      np.asarray(base, dtype=float) * threshold,
                                      equal_var=False, alternative="greater").pvalue)
    if not p_value < settings.alpha:  # also NaN (constant samples)
        return GateVerdict(None, ratio, measure)
    return GateVerdict(
        f"optimized/original {measure} ratio {ratio:.2f} > threshold {threshold:.2f} "
        f"({fmt_seconds(mean_fast)} vs {fmt_seconds(mean_base)}, {fast_n}/{base_n} calls over "
        f"{len(runs_with)} run(s), p={p_value:.1g})",
        ratio, measure,
    )
