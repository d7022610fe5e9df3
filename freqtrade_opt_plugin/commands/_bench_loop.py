"""The loop of ``freqtrade-opt bench``, shared by its backtest and hyperopt modes.

`run_bench` creates one offline workspace per `Size`, then alternates a stock and a plugin run of
a `Mode` per repetition (and point: hyperopt's epoch counts), compares each pair, and records wall
time, children's CPU time and the load average in the JSON report (schema `SCHEMA`). The mode's
summaries, the tables and the command line are in `commands.bench`.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:  # heavy imports happen when the bench runs, not when the CLI starts
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from freqtrade_opt_plugin.commands.bench import Size
    from freqtrade_opt_plugin.offline.compare import Verdict
    from freqtrade_opt_plugin.offline.workspace import Workspace


SCHEMA = "freqtrade-opt-bench/1"
LEVEL_ENV = "FREQTRADE_OPT_LEVEL"
STATE_DIR_ENV = "FREQTRADE_OPT_STATE_DIR"
CACHE_DIR_ENV = "FREQTRADE_OPT_CACHE_DIR"
ENV_PREFIX = "FREQTRADE_OPT_"
STOCK_LEVEL = "disabled"

STOCK, PLUGIN = "stock", "plugin"
IDENTICAL, DIFFERENT = "IDENTICAL", "DIFFERENT"

EXIT_IDENTICAL = 0
EXIT_DIFFERENT = 1
EXIT_FAILED = 2
EXIT_TOO_SLOW = 3


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not available on every platform
        return None


def _children_cpu() -> float | None:
    """User + system CPU seconds of all finished child processes (and theirs) so far."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_since(before: float | None) -> float | None:
    after = _children_cpu()
    return None if before is None or after is None else round(after - before, 4)


def machine_info() -> dict[str, Any]:
    """What the timings depend on: CPUs, Python, library versions, current load."""
    import freqtrade
    import numpy
    import pandas

    import freqtrade_opt_plugin

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "freqtrade_version": freqtrade.__version__,
        "plugin_version": freqtrade_opt_plugin.__version__,
        "numpy_version": numpy.__version__,
        "pandas_version": pandas.__version__,
        "loadavg_start": loadavg(),
    }


def stats(values: Sequence[float]) -> dict[str, Any]:
    values = list(values)
    if not values:
        return {"times": [], "median": None, "min": None, "max": None}
    return {
        "times": [round(v, 4) for v in values],
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def ratio(stock: float | None, plugin: float | None) -> float | None:
    if stock is None or plugin is None or plugin <= 0:
        return None
    return round(stock / plugin, 4)


def _verdict_json(verdict: Verdict, repetition: int, what: str) -> dict[str, Any]:
    diff = verdict.first_difference
    return {
        "repetition": repetition,
        "what": what,
        "identical": verdict.identical,
        "count_stock": verdict.trades_left,
        "count_plugin": verdict.trades_right,
        "unit": verdict.unit,
        "values_compared": verdict.values_compared,
        "differences": verdict.differences,
        "first_difference": None if diff is None else {
            "section": diff.section,
            "field": diff.field,
            "trade_index": diff.trade_index,
            "stock": repr(diff.left),
            "plugin": repr(diff.right),
            "description": diff.describe(),
        },
        "summary": verdict.summary(),
    }


def _first_difference(comparisons: list[dict[str, Any]]) -> dict[str, Any] | None:
    for comparison in comparisons:
        if not comparison["identical"]:
            return comparison["first_difference"]
    return None


@contextmanager
def _isolated_environ() -> Iterator[list[str]]:
    """Hide the caller's ``FREQTRADE_OPT_*`` variables from the runs (restored afterwards).

    A per-optimization override such as ``FREQTRADE_OPT_MAX_DRAWDOWN=true`` would otherwise switch
    an optimization on in the "stock" run. Yields the names hidden.
    """
    hidden = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    for key in hidden:
        del os.environ[key]
    try:
        yield sorted(hidden)
    finally:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[key]
        os.environ.update(hidden)


def _run_env(level: str, workspace: Workspace, state: str, run_name: str) -> dict[str, str]:
    state_dir = workspace.root / "state" / (run_name if state == "fresh" else "shared")
    return {
        LEVEL_ENV: level,
        STATE_DIR_ENV: str(state_dir),
        CACHE_DIR_ENV: str(state_dir / "cache"),
    }


class _Reporter:
    """Rich progress bar over all runs plus one printed line per finished run."""

    def __init__(self, console: Console, progress: Progress, task: TaskID) -> None:
        self.console, self.progress, self.task = console, progress, task

    @contextmanager
    def run(self, description: str) -> Iterator[Callable[[str], None]]:
        self.progress.update(self.task, description=description)
        notes: list[str] = []
        start = time.perf_counter()
        yield notes.append
        elapsed = time.perf_counter() - start
        detail = f" -- {notes[-1]}" if notes else ""
        self.console.print(f"[green]✓[/] {description}{detail} [dim]({elapsed:.1f} s)[/]")
        self.progress.advance(self.task)

    def note(self, text: str) -> None:
        self.console.print(text)


@contextmanager
def _progress(console: Console, total: int) -> Iterator[_Reporter]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task("starting", total=total)
        yield _Reporter(console, progress, task)


def _make_root(keep: str | os.PathLike | None) -> Path:
    if keep:
        root = Path(keep).expanduser().resolve()
        if root.exists() and any(root.iterdir()):
            raise ValueError(f"--keep directory {root} exists and is not empty")
        root.mkdir(parents=True, exist_ok=True)
        return root
    return Path(tempfile.mkdtemp(prefix="freqtrade-opt-bench-"))


def _workspace(root: Path, size: Size, seed: int) -> tuple[Workspace, float]:
    from freqtrade_opt_plugin.offline.datagen import default_pairs
    from freqtrade_opt_plugin.offline.workspace import create_workspace

    start = time.perf_counter()
    workspace = create_workspace(root / size.label, default_pairs(size.pairs), days=size.days,
                                 seed=seed)
    return workspace, time.perf_counter() - start


def _size_entry(size: Size, workspace: Workspace, seconds: float) -> dict[str, Any]:
    return {
        "label": size.label,
        "pairs": size.pairs,
        "days": size.days,
        "pair_list": list(workspace.pairs),
        "candles": workspace.candles,
        "workspace_seconds": round(seconds, 3),
        "runs": [],
        "comparisons": [],
    }


def _settings(args: dict[str, Any], hidden: list[str], level: str) -> dict[str, Any]:
    return {
        **args,
        "stock_env": {LEVEL_ENV: STOCK_LEVEL},
        "plugin_env": {LEVEL_ENV: level},
        "hidden_caller_env": hidden,
    }


def _new_report(mode: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "mode": mode,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "settings": settings,
        "machine": machine_info(),
        "sizes": [],
        "verdict": None,
        "exit_code": None,
        "error": None,
    }


def _finish_report(report: dict[str, Any], min_speedup: float | None, key: str) -> int:
    report["machine"]["loadavg_end"] = loadavg()
    identical = all(s["verdict"] == IDENTICAL for s in report["sizes"])
    report["verdict"] = IDENTICAL if identical else DIFFERENT
    code = EXIT_IDENTICAL if identical else EXIT_DIFFERENT
    if identical and min_speedup is not None:
        ratios = [s[key] for s in report["sizes"]]
        if any(r is None or r < min_speedup for r in ratios):
            code = EXIT_TOO_SLOW
    report["exit_code"] = code
    return code


# --------------------------------------------------------------------------------------------
# the loop: both modes alternate a stock and a plugin run per repetition and point


@dataclass
class Mode:
    """What differs between the backtest and the hyperopt bench; `run_bench` is the loop.

    `points`: what each repetition runs once per variant (hyperopt: the epoch counts; backtest:
    one ``None``). `run(workspace, env, name, point)` starts one Freqtrade run; `fields(run,
    point)` are its mode's own fields of the JSON run record; `compare(stock, plugin)` is the
    identity verdict; `cleanup(run)` removes a run's results (unless ``--keep``)."""

    name: str
    points: tuple[int | None, ...]
    run: Callable[[Workspace, dict[str, str], str, int | None], Any]
    fields: Callable[[Any, int | None], dict[str, Any]]
    done: Callable[[Any], str]
    compare: Callable[[Any, Any], Verdict]
    cleanup: Callable[[Any], None]
    summarize: Callable[[dict[str, Any]], None]
    ratio_key: str
    label: Callable[[int | None], str] = lambda point: ""  # in the run's name
    title: Callable[[int | None], str] = lambda point: ""  # in its progress line
    what: Callable[[int | None], str] = lambda point: "plugin run vs stock run of the repetition"


def run_bench(
    mode: Mode,
    sizes: Sequence[Size],
    settings: dict[str, Any],
    banner: Callable[[dict[str, Any], Path], str],
    *,
    repeat: int,
    level: str,
    seed: int,
    warmup: int,
    state: str,
    keep: str | os.PathLike | None,
    min_speedup: float | None,
    console: Console | None,
) -> dict[str, Any]:
    """Time stock vs plugin runs of `mode` for every size; the report (see module doc).

    Raises ``HarnessError`` when a Freqtrade run fails; the report built so far is attached to
    the exception as ``exc.bench_report``.
    """
    from rich.console import Console

    console = console or Console()
    root = _make_root(keep)
    total = len(sizes) * 2 * len(mode.points) * (repeat + warmup)
    with _isolated_environ() as hidden:
        report = _new_report(mode.name, _settings(settings, hidden, level))
        console.print(banner(report, root))
        try:
            with _progress(console, total) as reporter:
                for size in sizes:
                    workspace, seconds = _workspace(root, size, seed)
                    entry = _size_entry(size, workspace, seconds)
                    report["sizes"].append(entry)
                    reporter.note(
                        f"[bold]{size.label}[/]: {len(workspace.pairs)} pairs, "
                        f"{workspace.candles:,} candles [dim](generated in {seconds:.1f} s)[/]"
                    )
                    for rep in range(-warmup + 1, repeat + 1):
                        for point in mode.points:
                            _run_pair(mode, reporter, entry, workspace, size, rep, point,
                                      repeat=repeat, level=level, state=state, keep=keep)
                    mode.summarize(entry)
        except BaseException as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
            exc.bench_report = report  # type: ignore[attr-defined]
            raise
        finally:
            if keep:
                console.print(f"[dim]workspaces kept in {root}[/]")
            else:
                shutil.rmtree(root, ignore_errors=True)
    _finish_report(report, min_speedup, mode.ratio_key)
    return report


def _run_pair(mode: Mode, reporter: _Reporter, entry: dict[str, Any], workspace: Workspace,
              size: Size, rep: int, point: int | None, *, repeat: int, level: str, state: str,
              keep: str | os.PathLike | None) -> None:
    """One stock run, then one plugin run, compared; recorded unless a warm-up (`rep` < 1)."""
    stock_run = None
    for variant, run_level in ((STOCK, STOCK_LEVEL), (PLUGIN, level)):
        tag = f"warmup{-rep + 1}" if rep < 1 else f"r{rep}"
        name = f"{variant}{mode.label(point)}-{tag}"
        title = (f"{size.label} {'warm-up' if rep < 1 else f'rep {rep}/{repeat}'} "
                 f"{variant}{mode.title(point)} [dim]({LEVEL_ENV}={run_level})[/]")
        with reporter.run(title) as note:
            load, cpu = loadavg(), _children_cpu()
            run = mode.run(workspace, _run_env(run_level, workspace, state, name), name, point)
            cpu = _cpu_since(cpu)
            note(mode.done(run))
        if rep >= 1:
            entry["runs"].append({
                "variant": variant, "repetition": rep, "level": run_level,
                **mode.fields(run, point), "wall_time": round(run.wall_time, 4),
                "cpu_time": cpu, "loadavg_before": load,
            })
        if variant == STOCK:
            stock_run = run
            continue
        assert stock_run is not None
        verdict = mode.compare(stock_run, run)
        entry["comparisons"].append(_verdict_json(verdict, rep, mode.what(point)))
        if not verdict.identical:
            reporter.note(f"[red]✗ {size.label}: {verdict.summary()}[/]")
        if not keep:
            mode.cleanup(stock_run)
            mode.cleanup(run)


def summary_tail(entry: dict[str, Any]) -> None:
    """The verdict, first difference and median load of a size (both modes)."""
    entry["verdict"] = (
        IDENTICAL if all(c["identical"] for c in entry["comparisons"]) else DIFFERENT
    )
    entry["first_difference"] = _first_difference(entry["comparisons"])
    loads = [r["loadavg_before"][0] for r in entry["runs"] if r["loadavg_before"]]
    entry["loadavg_1min_median"] = round(statistics.median(loads), 2) if loads else None
