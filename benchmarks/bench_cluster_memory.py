"""Benchmark: memory of a hyperopt worker process, loky (``-j``) vs a Dask worker (issue #15).

    python benchmarks/bench_cluster_memory.py [--pairs 4] [--days 30] [--epochs 40] [--jobs 2]
        [--nanny] [--dask-env MALLOC_ARENA_MAX=2 ...] [--skip-loky] [--json out.json]

The same seeded hyperopt runs once with ``-j`` loky workers and once on a local Dask cluster of
``--jobs`` single-thread workers (``dask scheduler`` / ``dask worker`` subprocesses). Every worker
process carries the probe ``benchmarks/memprobe/sitecustomize.py``, which records RSS, peak RSS
(``VmHWM``) and glibc's heap (in use / free but held) around each epoch. Per worker process:

- idle: a Dask worker after start-up (nothing run yet; loky workers have no idle state: they
  start for the run and unpickle the first epoch's task at once),
- setup: after the run plugin set the Dask worker up (data file written),
- first: before its first epoch (loky: after start-up and unpickling the first task),
- peak: the process's peak RSS over the run,
- end: after its last epoch, and growth per epoch: slope of the RSS after each epoch (least
  squares over its epochs after the 3rd, so the first epochs' warm-up does not count).

With ``--nanny`` the Dask workers run under a nanny; its RSS is reported on its own. Both runs'
epochs are compared (``offline.compare.compare_hyperopt``): they must be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


PROBE = Path(__file__).resolve().parent / "memprobe"
FIELDS = ("VmRSS", "VmHWM", "heap_used", "heap_free")


def _status() -> dict[str, float]:
    """Run on a Dask worker (by value): this process's RSS and peak (MB)."""
    import psutil

    out: dict[str, float] = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    parent = psutil.Process().parent()
    out["parent_rss"] = parent.memory_info().rss / 2**20 if parent else 0.0
    out["parent_cmd"] = " ".join(parent.cmdline()[1:4]) if parent else ""
    return out


def _env(probe_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    from freqtrade_opt_plugin.offline.workspace import subprocess_env

    probe_dir.mkdir(parents=True, exist_ok=True)
    base = subprocess_env()
    paths = [str(PROBE), *[p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**base, "PYTHONPATH": os.pathsep.join(paths), "FTOPT_MEMPROBE_DIR": str(probe_dir),
            **(extra or {})}


def _slope(points: list[tuple[int, float]]) -> float | None:
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None


def _workers(probe_dir: Path) -> list[dict[str, Any]]:
    """One summary per process that ran epochs (from the probe's files)."""
    out = []
    for path in sorted(probe_dir.glob("*.jsonl")):
        events = [json.loads(line) for line in path.read_text().splitlines()]
        before = [e for e in events if e["event"] == "before"]
        after = [e for e in events if e["event"] == "after"]
        if not after:
            continue
        setup = [e for e in events if e["event"] == "setup"]
        tail = [(e["epoch"], e["VmRSS"]) for e in after if e["epoch"] > 3]
        out.append({
            "pid": int(path.stem), "epochs": len(after), "thread": after[0]["thread"],
            "setup": setup[0]["VmRSS"] if setup else None,
            "first": before[0]["VmRSS"],
            "after_first": after[0]["VmRSS"],
            "peak": max(e["VmHWM"] for e in events),
            "end": after[-1]["VmRSS"],
            "growth_per_epoch": _slope(tail),
            "heap_used_end": after[-1].get("heap_used"),
            "heap_free_end": after[-1].get("heap_free"),
            "rss_after": [round(e["VmRSS"], 1) for e in after],
            "heap_used_after": [round(e.get("heap_used", 0), 1) for e in after],
        })
    return out


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _print(name: str, workers: list[dict[str, Any]], idle: dict[int, float]) -> None:
    print(f"\n{name}:")
    print(f"  {'pid':>7} {'epochs':>6} {'idle':>7} {'setup':>7} {'first':>7} {'peak':>7} "
          f"{'end':>7} {'MB/epoch':>8} {'heap used/free at end':>22}  thread")
    for w in workers:
        print(f"  {w['pid']:>7} {w['epochs']:>6} {_fmt(idle.get(w['pid'])):>7} "
              f"{_fmt(w['setup']):>7} {_fmt(w['first']):>7} {_fmt(w['peak']):>7} "
              f"{_fmt(w['end']):>7} {_fmt(w['growth_per_epoch']):>8} "
              f"{_fmt(w['heap_used_end']):>10} / {_fmt(w['heap_free_end']):<9}  {w['thread']}")
        print(f"          RSS after each epoch: {w['rss_after']}")
        print(f"          heap in use after each epoch: {w['heap_used_after']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--level", default="standard")
    parser.add_argument("--random-state", type=int, default=7)
    parser.add_argument("--nanny", action="store_true")
    parser.add_argument("--skip-loky", action="store_true")
    parser.add_argument("--dask-env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment of the Dask workers (e.g. MALLOC_ARENA_MAX=2)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import cloudpickle

    from freqtrade_opt_plugin.cluster.local import start_local_cluster
    from freqtrade_opt_plugin.offline.compare import compare_hyperopt
    from freqtrade_opt_plugin.offline.datagen import default_pairs
    from freqtrade_opt_plugin.offline.workspace import create_workspace, run_hyperopt

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    root = Path(tempfile.mkdtemp(prefix="ftopt-cluster-mem-"))
    workspace = create_workspace(root / "ws", default_pairs(args.pairs), days=args.days, seed=5)
    common = {"FREQTRADE_OPT_LEVEL": args.level}
    report: dict[str, Any] = {"settings": vars(args) | {"json": str(args.json)}}

    def hyperopt(name: str, env: dict[str, str]) -> Any:
        env = {**env, "FREQTRADE_OPT_STATE_DIR": str(root / "state" / name)}
        start = time.perf_counter()
        run = run_hyperopt(workspace, env, epochs=args.epochs, jobs=args.jobs,
                           random_state=args.random_state, name=name)
        print(f"{name}: {len(run.epochs)} epochs in {time.perf_counter() - start:.1f} s")
        return run

    runs = {}
    if not args.skip_loky:
        runs["loky"] = hyperopt("loky", _env(root / "probe-loky", common))
        report["loky"] = _workers(root / "probe-loky")
    data = workspace.user_data / "hyperopt_results" / "hyperopt_tickerdata.pkl"

    dask_env = dict(item.split("=", 1) for item in args.dask_env)
    cluster = start_local_cluster(root / "dask", args.jobs,
                                  env=_env(root / "probe-dask", dask_env), nanny=args.nanny)
    try:
        with cluster.client() as client:
            time.sleep(2)
            idle = client.run(_status)
            runs["dask"] = hyperopt("dask", {**common,
                                             "FREQTRADE_OPT_DASK_SCHEDULER": cluster.address})
            time.sleep(1)
            ended = client.run(_status)
            from freqtrade_opt_plugin.cluster import epochs

            released = client.run(epochs.released)
            pids = client.run(os.getpid)
    finally:
        cluster.stop()
    report["dask"] = _workers(root / "probe-dask")
    by_pid = {pids[a]: s for a, s in idle.items()}
    report["dask_idle"] = {pid: s["VmRSS"] for pid, s in by_pid.items()}
    report["dask_after_run"] = {pids[a]: s["VmRSS"] for a, s in ended.items()}
    report["released"] = {pids[a]: r for a, r in released.items()}
    report["nanny"] = ({pids[a]: s["parent_rss"] for a, s in ended.items()} if args.nanny
                       else None)
    if data.is_file():
        report["data_file_mb"] = data.stat().st_size / 2**20

    print(f"\n{args.pairs} pairs x {args.days:g} days (data file "
          f"{report.get('data_file_mb', 0):.1f} MB), {args.epochs} epochs, -j {args.jobs}, "
          f"level {args.level}; MB (RSS unless said)")
    if "loky" in report:
        _print("loky workers", report["loky"], {})
    title = f"Dask workers{' (nanny)' if args.nanny else ''} {dask_env or ''}"
    _print(title.rstrip(), report["dask"], report["dask_idle"])
    print(f"  after the run (plugin removed): {report['dask_after_run']}")
    for pid, r in report["released"].items():
        print(f"  {pid}: release_memory ran after {r['epochs']} epochs, "
              f"{1000 * r['seconds'] / max(r['epochs'], 1):.1f} ms per epoch")
    if report["nanny"]:
        print(f"  nanny processes: {report['nanny']}")
    if "loky" in runs:
        verdict = compare_hyperopt(runs["loky"], runs["dask"])
        report["identical"] = verdict.identical
        print(f"\nepochs loky vs dask: {'identical' if verdict.identical else 'DIFFERENT'}"
              f"{'' if verdict.identical else ': ' + str(verdict.first_difference)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0 if report.get("identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
