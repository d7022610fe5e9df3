"""Cluster mode of ``freqtrade-opt bench --hyperopt --dask``: what an epoch costs on Dask.

Per size and repetition the same hyperopt (same level, ``-j``, ``--random-state``) runs with
loky on this machine and on a local Dask cluster (a ``dask scheduler`` and ``--workers`` single
thread ``dask worker`` processes started for the bench), alternating, with ``N`` epochs and with 1
epoch. Reported: wall and CPU of each side (CPU of the Dask side includes the scheduler's and the
workers'), the marginal epoch ``(wall(N) - wall(1)) / (N - 1)`` of each, the overhead per epoch
(Dask marginal - loky marginal) and whether every epoch of both sides is identical.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from typing import Any

from freqtrade_opt_plugin.commands import _bench_loop as loop
from freqtrade_opt_plugin.commands import bench as core


LOKY, DASK = "loky", "dask"


def _tree_cpu(pids: Sequence[int]) -> float:
    """User + system CPU seconds of processes `pids` and their children (alive ones)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in (proc, *proc.children(recursive=True)):
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _cluster_pids(cluster: Any) -> list[int]:
    procs = [cluster.scheduler, *cluster.workers.values()]
    return [p.proc.pid for p in procs if p is not None]


def _marginals(full: list[float], one: list[float], epochs: int) -> list[float]:
    """Per repetition (N-epoch and 1-epoch runs back to back): the cost of one more epoch."""
    return [(n - s) / (epochs - 1) for n, s in zip(full, one, strict=False)]


def _side(runs: list[dict[str, Any]], variant: str, epochs: int, marginal: bool) -> dict:
    def pick(n: int, key: str) -> list[float]:
        return [r[key] for r in runs if r["variant"] == variant and r["epochs_requested"] == n]

    full, cpu = pick(epochs, "wall_time"), pick(epochs, "cpu_time")
    one, cpu_one = (pick(1, "wall_time"), pick(1, "cpu_time")) if marginal else ([], [])
    return {
        "wall": core.stats(full),
        "cpu": core.stats(cpu),
        "startup_1_epoch": core.stats(one),
        "marginal_epoch": core.stats(_marginals(full, one, epochs)),
        "marginal_epoch_cpu": core.stats(_marginals(cpu, cpu_one, epochs)),
    }


def _summarize(entry: dict[str, Any], epochs: int, marginal: bool) -> None:
    loky = entry[LOKY] = _side(entry["runs"], LOKY, epochs, marginal)
    dask = entry[DASK] = _side(entry["runs"], DASK, epochs, marginal)

    def delta(key: str) -> float | None:
        a, b = dask[key]["median"], loky[key]["median"]
        return None if a is None or b is None else round(a - b, 4)

    entry["overhead_per_epoch"] = delta("marginal_epoch")
    entry["overhead_per_epoch_cpu"] = delta("marginal_epoch_cpu")
    entry["overhead_startup"] = delta("startup_1_epoch")
    entry["ratio_marginal_epoch"] = core.ratio(loky["marginal_epoch"]["median"],
                                                dask["marginal_epoch"]["median"])
    entry["epochs"] = epochs
    entry["verdict"] = loop.IDENTICAL if all(c["identical"] for c in entry["comparisons"]) \
        else loop.DIFFERENT
    entry["first_difference"] = loop._first_difference(entry["comparisons"])


def run_cluster_bench(
    sizes: Sequence[Any], *, repeat: int = core.DEFAULT_REPEAT, level: str = "standard",
    seed: int = core.DEFAULT_SEED, epochs: int = core.DEFAULT_EPOCHS,
    jobs: int = core.DEFAULT_JOBS, random_state: int = core.DEFAULT_RANDOM_STATE,
    spaces: Sequence[str] = core.DEFAULT_SPACES, loss: str = core.DEFAULT_LOSS,
    marginal: bool = True, workers: int = 2, warmup: int = 0, state: str = "fresh",
    keep: Any = None, min_speedup: float | None = None, console: Any = None,
) -> dict[str, Any]:
    """Loky vs a local Dask cluster of `workers` processes, per size (see module doc)."""
    from rich.console import Console

    from freqtrade_opt_plugin.cluster.local import start_local_cluster
    from freqtrade_opt_plugin.offline.compare import compare_hyperopt
    from freqtrade_opt_plugin.offline.workspace import run_hyperopt, subprocess_env

    core._check_common(level, repeat, warmup, state)
    if epochs < 1 or jobs < 1 or workers < 1:
        raise ValueError(f"epochs, jobs and workers must be >= 1, got {epochs}, {jobs}, {workers}")
    marginal = marginal and epochs > 1
    counts = (epochs, 1) if marginal else (epochs,)
    console = console or Console()
    root = loop._make_root(keep)
    with loop._isolated_environ() as hidden:
        report = loop._new_report("hyperopt-dask", loop._settings({
            "scale": ",".join(s.label for s in sizes), "repeat": repeat, "warmup": warmup,
            "level": level, "seed": seed, "epochs": epochs, "jobs": jobs, "workers": workers,
            "random_state": random_state, "spaces": list(spaces), "loss": loss,
            "marginal": marginal, "state": state,
        }, hidden, level))
        console.print(f"[bold]freqtrade-opt bench[/]: hyperopt, -j {jobs} loky vs a local Dask "
                      f"cluster of {workers} single-thread workers, {epochs} epochs, level "
                      f"{level}, {repeat} repetition(s) [dim](in {root})[/]")
        cluster = start_local_cluster(root / "dask", workers, env=subprocess_env())
        try:
            total = len(sizes) * 2 * len(counts) * (repeat + warmup)
            with loop._progress(console, total) as reporter:
                for size in sizes:
                    workspace, seconds = loop._workspace(root, size, seed)
                    entry = loop._size_entry(size, workspace, seconds)
                    report["sizes"].append(entry)
                    for rep in range(-warmup + 1, repeat + 1):
                        for n in counts:
                            done: dict[str, Any] = {}
                            for variant in (LOKY, DASK):
                                name = f"{variant}-{n}ep-r{rep}"
                                env = loop._run_env(level, workspace, state, name)
                                if variant == DASK:
                                    env["FREQTRADE_OPT_DASK_SCHEDULER"] = cluster.address
                                with reporter.run(f"{size.label} rep {rep} {variant} {n} "
                                                  "epoch(s)") as note:
                                    load, cpu = loop.loadavg(), loop._children_cpu()
                                    cluster_cpu = _tree_cpu(_cluster_pids(cluster))
                                    run = run_hyperopt(workspace, env, epochs=n, jobs=jobs,
                                                       random_state=random_state, spaces=spaces,
                                                       loss=loss, name=name)
                                    cpu = loop._cpu_since(cpu)
                                    if variant == DASK and cpu is not None:
                                        cpu += _tree_cpu(_cluster_pids(cluster)) - cluster_cpu
                                    note(f"{run.wall_time:.2f} s wall, {cpu or 0:.2f} s CPU")
                                done[variant] = run
                                if rep >= 1:
                                    entry["runs"].append({
                                        "variant": variant, "repetition": rep,
                                        "epochs_requested": n, "epochs_recorded": len(run.epochs),
                                        "wall_time": round(run.wall_time, 4),
                                        "cpu_time": None if cpu is None else round(cpu, 4),
                                        "loadavg_before": load})
                            verdict = compare_hyperopt(done[LOKY], done[DASK])
                            entry["comparisons"].append(loop._verdict_json(
                                verdict, rep, f"dask vs loky, {n} epoch(s)"))
                            if not keep:
                                for run in done.values():
                                    run.results_file.unlink(missing_ok=True)
                                    shutil.rmtree(run.log_path.parent, ignore_errors=True)
                    _summarize(entry, epochs, marginal)
        except BaseException as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
            exc.bench_report = report  # type: ignore[attr-defined]
            raise
        finally:
            cluster.stop()
            time.sleep(0.1)
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
    loop._finish_report(report, min_speedup, "ratio_marginal_epoch")
    return report


def print_cluster_table(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    settings = report["settings"]
    table = Table(title=f"freqtrade hyperopt: -j {settings['jobs']} loky vs Dask "
                        f"({settings['workers']} local workers), {settings['epochs']} epochs, "
                        f"median of {settings['repeat']}", title_justify="left")
    for name in ("size", "loky wall", "dask wall", "loky CPU", "dask CPU", "loky marginal",
                 "dask marginal", "overhead/epoch", "CPU overhead/epoch", "start-up overhead",
                 "results"):
        table.add_column(name, justify="left" if name in ("size", "results") else "right")
    for entry in report["sizes"]:
        if "verdict" not in entry:
            continue
        lo, da = entry[LOKY], entry[DASK]
        table.add_row(
            entry["label"], core._fmt_s(lo["wall"]["median"]), core._fmt_s(da["wall"]["median"]),
            core._fmt_s(lo["cpu"]["median"]), core._fmt_s(da["cpu"]["median"]),
            core._fmt_s(lo["marginal_epoch"]["median"]),
            core._fmt_s(da["marginal_epoch"]["median"]),
            core._fmt_s(entry["overhead_per_epoch"]), core._fmt_s(entry["overhead_per_epoch_cpu"]),
            core._fmt_s(entry["overhead_startup"]), core._fmt_verdict(entry))
    console.print(table)
    console.print("[dim]marginal = (wall of N epochs - wall of 1 epoch) / (N - 1); overhead = "
                  "dask - loky. Dask CPU includes the scheduler's and the workers'.[/]")
    core._print_footer(console, report)
