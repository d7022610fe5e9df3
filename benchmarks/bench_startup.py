"""Interpreter start-up cost of the auto-load hook (.pth): `python -c pass` with it on and off.

Runs both variants alternately in fresh interpreters and reports medians and the difference.
Usage: python benchmarks/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def one_run(autoload: str) -> float:
    env = dict(os.environ, FREQTRADE_OPT_AUTOLOAD=autoload)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    on: list[float] = []
    off: list[float] = []
    for _ in range(args.runs):
        off.append(one_run("0"))
        on.append(one_run("1"))
    med_on, med_off = statistics.median(on), statistics.median(off)
    print(f"python -c pass, {args.runs} runs each, alternating")
    print(f"  auto-load off : median {med_off * 1000:7.2f} ms")
    print(f"  auto-load on  : median {med_on * 1000:7.2f} ms")
    print(f"  hook cost     : {(med_on - med_off) * 1000:+7.2f} ms (goal < 10 ms)")
    imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"],
                             capture_output=True, text=True).stderr
    for line in imports.splitlines():
        if "freqtrade_opt_plugin" in line:
            print("  importtime:", line.split("import time:")[-1].strip())


if __name__ == "__main__":
    main()
