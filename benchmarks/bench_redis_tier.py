"""Benchmark: the shared Redis tier on the demo workload (a second machine's first run).

    python benchmarks/bench_redis_tier.py                    # demo workload: 10 pairs x 60 days
    python benchmarks/bench_redis_tier.py --indicators-only  # result reuse off: indicators only
    python benchmarks/bench_redis_tier.py --quick            # 3 pairs x 20 days, 2 repetitions
    python benchmarks/bench_redis_tier.py --micro            # GET of one entry: hiredis vs Python

Each repetition, on an empty redis-server started here (127.0.0.1, a free port):

* ``stock``: the plugin disabled;
* ``cold``: level aggressive, empty local tier and empty Redis (computes, stores in both);
* ``cold, no Redis``: the same without the shared tier (what storing in Redis costs);
* ``warm local``: the ``cold`` machine again (its local tier is warm);
* ``second machine``: another state directory (empty local tier), Redis warm from ``cold``.

Timings are wall times of fresh ``freqtrade backtesting`` processes (medians over repetitions);
every run is compared trade by trade with ``stock`` before its time is reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


def end_to_end(pairs: int, days: int, repeat: int, indicators_only: bool) -> None:
    import redis

    from freqtrade_opt_plugin.offline.compare import compare_backtests
    from freqtrade_opt_plugin.offline.datagen import default_pairs
    from freqtrade_opt_plugin.offline.workspace import create_workspace, run_backtest

    root = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    proc, url = start_redis(root)
    client = redis.Redis.from_url(url)
    extra = {"FREQTRADE_OPT_CACHE_BACKTESTS": "false"} if indicators_only else {}
    try:
        workspace = create_workspace(root / "ws", default_pairs(pairs), days=days, seed=42)
        print(f"demo workload: {pairs} pairs x {days} days, SampleStrategy, level aggressive"
              f"{' (result reuse off: indicators only)' if indicators_only else ''}")
        stock = run_backtest(workspace, {"FREQTRADE_OPT_LEVEL": "disabled",
                                         "FREQTRADE_OPT_STATE_DIR": str(root / "stock")},
                             name="stock")
        times: dict[str, list[float]] = {k: [] for k in (
            "stock", "cold", "cold, no Redis", "warm local", "second machine")}
        times["stock"].append(stock.wall_time)
        for rep in range(repeat):
            client.flushall()

            def machine(name: str, shared: bool = True, rep: int = rep) -> dict[str, str]:
                env = {"FREQTRADE_OPT_LEVEL": "aggressive",
                       "FREQTRADE_OPT_STATE_DIR": str(root / f"{name}-{rep}"), **extra}
                if shared:
                    env["FREQTRADE_OPT_CACHE_REDIS_URL"] = url
                return env

            runs = {
                "cold": run_backtest(workspace, machine("a"), name="cold"),
                "cold, no Redis": run_backtest(workspace, machine("local", shared=False),
                                               name="local"),
                "warm local": run_backtest(workspace, machine("a"), name="warm"),
                "second machine": run_backtest(workspace, machine("b"), name="second"),
            }
            if rep:
                times["stock"].append(run_backtest(
                    workspace, {"FREQTRADE_OPT_LEVEL": "disabled",
                                "FREQTRADE_OPT_STATE_DIR": str(root / "stock")},
                    name="stock").wall_time)
            for label, run in runs.items():
                verdict = compare_backtests(stock, run)
                if not verdict.identical:
                    sys.exit(f"{label}: results differ from stock: {verdict.summary()}")
                times[label].append(run.wall_time)
            used = client.info("memory")["used_memory"] / 2**20
            print(f"  repetition {rep + 1}/{repeat}: "
                  + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
                  + f"; Redis {client.dbsize()} entries, {used:.1f} MB")
        base = statistics.median(times["stock"])
        cold = statistics.median(times["cold"])
        print(f"\n{'run':<16} {'median s':>9} {'vs stock':>9} {'vs cold':>8}   (all identical "
              "to stock)")
        for label, values in times.items():
            med = statistics.median(values)
            print(f"{label:<16} {med:>9.2f} {base / med:>8.2f}x {cold / med:>7.2f}x")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def micro(repeat: int) -> None:
    """GET of one sealed entry (an indicator frame), hiredis against redis-py's Python parser."""
    import numpy as np
    import pandas as pd
    import redis
    from redis._parsers import _HiredisParser, _RESP2Parser

    from freqtrade_opt_plugin.cache.disk import encode

    root = Path(tempfile.mkdtemp(prefix="bench-redis-micro-"))
    proc, url = start_redis(root)
    try:
        rng = np.random.default_rng(0)
        for rows, cols in ((17_280, 20), (17_280, 120), (500, 5)):
            frame = pd.DataFrame(rng.random((rows, cols)), columns=[f"c{i}" for i in range(cols)])
            payload = encode(frame).payload
            results = {}
            for name, parser in (("hiredis", _HiredisParser), ("python", _RESP2Parser)):
                client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(
                    url, parser_class=parser))
                client.set("k", payload)
                samples = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    client.get("k")
                    samples.append(time.perf_counter() - start)
                results[name] = statistics.median(samples)
            print(f"entry {len(payload) / 2**20:7.2f} MB: GET hiredis "
                  f"{results['hiredis'] * 1000:7.3f} ms, python {results['python'] * 1000:7.3f} "
                  f"ms, ratio {results['python'] / results['hiredis']:.2f}x")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--indicators-only", action="store_true")
    parser.add_argument("--micro", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("FREQTRADE_OPT_AUTOLOAD", "1")
    if args.micro:
        micro(repeat=50)
        return
    if args.quick:
        args.pairs, args.days, args.repeat = 3, 20, 2
    end_to_end(args.pairs, args.days, args.repeat, args.indicators_only)


if __name__ == "__main__":
    main()
