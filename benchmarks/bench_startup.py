"""Start-up costs, in fresh interpreters, variants alternating; medians and differences.

* default: the auto-load hook (.pth) on `python -c pass`, on and off.
* ``--imports``: `python -c "import freqtrade.optimize.backtesting"` at level standard with the
  ``p_value`` optimization off and on (on: scipy.stats is deferred, `lazy_imports`), plus a
  ``-X importtime`` breakdown of each (freqtrade.data.metrics, scipy.stats, scipy.special).
* ``--backtest``: whole offline `freqtrade backtesting` processes: stock (level disabled),
  standard with ``p_value`` off, standard with it on; every result compared with stock. Each
  process gets a fresh state directory (no telemetry history: the monitor's cross-run
  statistics, which use scipy.stats when they suspect a slowdown, do not run).

Usage: python benchmarks/bench_startup.py [--imports | --backtest] [--runs N]
       [--pairs P --days D]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMPORT = "import freqtrade.optimize.backtesting"
REPORT = ("import sys, types; m = sys.modules.get('scipy.stats'); "
          "print('scipy.stats:', 'not imported' if m is None else 'loaded' "
          "if type(m) is types.ModuleType else 'imported, not loaded')")
VARIANTS = {  # name -> environment overrides (level standard: everything else the same)
    "p_value off": {"FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_P_VALUE": "false"},
    "p_value on": {"FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_P_VALUE": "true"},
}


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _summary(times: dict[str, list[float]], cpu: dict[str, list[float]], unit: float,
             label: str) -> None:
    """Medians per variant, then the p_value off - on difference: of the medians, and the
    median of the per-round differences (variants alternate, so a round shares the load)."""
    for name, values in times.items():
        shown = " ".join(f"{value * unit:.0f}" if unit > 1 else f"{value:.2f}" for value in values)
        print(f"  {name:12}: median wall {statistics.median(values) * unit:8.2f} {label}, "
              f"CPU {statistics.median(cpu[name]) * unit:8.2f} {label}  runs: {shown}")
    off, on = times["p_value off"], times["p_value on"]
    paired = statistics.median(a - b for a, b in zip(off, on, strict=True))
    cpu_paired = statistics.median(a - b for a, b in zip(cpu["p_value off"], cpu["p_value on"],
                                                         strict=True))
    print(f"  p_value on saves: wall {paired * unit:+.2f} {label} (median of paired "
          f"differences; medians {statistics.median(off) / statistics.median(on):.3f}x), "
          f"CPU {cpu_paired * unit:+.2f} {label}")


def _env(overrides: dict[str, str]) -> dict[str, str]:
    from freqtrade_opt_plugin.offline.workspace import subprocess_env

    clean = {k: v for k, v in subprocess_env().items() if not k.startswith("FREQTRADE_OPT_")}
    return {**clean, **overrides}


def one_run(autoload: str) -> float:
    env = dict(os.environ, FREQTRADE_OPT_AUTOLOAD=autoload)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - start


def hook_cost(runs: int) -> None:
    on: list[float] = []
    off: list[float] = []
    for _ in range(runs):
        off.append(one_run("0"))
        on.append(one_run("1"))
    med_on, med_off = statistics.median(on), statistics.median(off)
    print(f"python -c pass, {runs} runs each, alternating")
    print(f"  auto-load off : median {med_off * 1000:7.2f} ms")
    print(f"  auto-load on  : median {med_on * 1000:7.2f} ms")
    print(f"  hook cost     : {(med_on - med_off) * 1000:+7.2f} ms (goal < 10 ms)")
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"],
                             capture_output=True, text=True).stderr
    for line in imports.splitlines():
        if "freqtrade_opt_plugin" in line:
            print("  importtime:", line.split("import time:")[-1].strip())


def _importtime(env: dict[str, str]) -> tuple[dict[str, float], str]:
    """Cumulative import ms of a few modules (-X importtime) and the scipy.stats state."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"{IMPORT}; {REPORT}"],
                          env=env, capture_output=True, text=True, check=True)
    cumulative: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s+(\S+)$", line.rstrip())
        if match and match.group(2) not in cumulative:
            cumulative[match.group(2)] = int(match.group(1)) / 1000
    return cumulative, proc.stdout.strip()


def imports(runs: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    envs = {name: _env(overrides) for name, overrides in VARIANTS.items()}
    for _ in range(runs):
        for name, env in envs.items():
            start, start_cpu = time.perf_counter(), _children_cpu()
            subprocess.run([sys.executable, "-c", IMPORT], env=env, check=True)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(_children_cpu() - start_cpu)
    print(f"python -c '{IMPORT}', {runs} fresh processes each, alternating")
    _summary(times, cpu, 1000, "ms")
    print("-X importtime (one process each, cumulative ms):")
    for name, env in envs.items():
        cumulative, state = _importtime(env)
        shown = ", ".join(f"{module} {cumulative[module]:.0f}" for module in
                          ("freqtrade.data.metrics", "scipy.stats", "scipy.special")
                          if module in cumulative)
        print(f"  {name:12}: {shown}; {state}")


def backtests(runs: int, pairs: int, days: int, with_stock: bool = True) -> int:
    from freqtrade_opt_plugin.offline.compare import compare_backtests
    from freqtrade_opt_plugin.offline.datagen import default_pairs
    from freqtrade_opt_plugin.offline.workspace import create_workspace, run_backtest

    variants = {"stock": {"FREQTRADE_OPT_LEVEL": "disabled"}} if with_stock else {}
    variants.update(VARIANTS)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = create_workspace(Path(tmp) / "ws", default_pairs(pairs), days=days, seed=42)
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        reference_run = None
        different = 0
        for i in range(runs):
            for name, overrides in variants.items():
                # A fresh state directory per process: no telemetry history, so the monitor's
                # cross-run statistics (which import scipy.stats when a slowdown is suspected)
                # do not run and the start-up difference is measured alone.
                state = Path(tmp) / f"state-{name.replace(' ', '-')}-{i}"
                env = {**overrides, "FREQTRADE_OPT_STATE_DIR": str(state)}
                start_cpu = _children_cpu()
                run = run_backtest(workspace, env, name=f"{name.replace(' ', '-')}{i}")
                cpu[name].append(_children_cpu() - start_cpu)
                times[name].append(run.wall_time)
                if reference_run is None:
                    reference_run = run
                elif not compare_backtests(reference_run, run).identical:
                    different += 1
                    print(f"  DIFFERENT: {name} run {i}: {compare_backtests(reference_run, run)}")
    print(f"freqtrade backtesting, {pairs} pairs x {days} days, {runs} fresh processes each, "
          f"alternating")
    _summary(times, cpu, 1, "s")
    if "stock" in times:
        stock = statistics.median(times["stock"])
        print("  vs stock (wall medians): " + ", ".join(
            f"{name} {stock / statistics.median(values):.2f}x" for name, values in times.items()
            if name != "stock"))
    first = next(iter(variants))
    print(f"  results identical to {first}: {'yes' if not different else f'NO ({different})'}")
    return 1 if different else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--imports", action="store_true", help="import freqtrade backtesting")
    mode.add_argument("--backtest", action="store_true", help="whole backtest processes")
    parser.add_argument("--runs", type=int, default=None,
                        help="fresh processes per variant (60 / 15 / 5)")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--no-stock", action="store_true",
                        help="--backtest: only the two p_value variants")
    args = parser.parse_args()
    if args.imports:
        imports(args.runs or 15)
    elif args.backtest:
        return backtests(args.runs or 5, args.pairs, args.days, not args.no_stock)
    else:
        hook_cost(args.runs or 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
