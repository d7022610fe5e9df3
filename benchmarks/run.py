"""End-to-end benchmark: stock Freqtrade vs. freqtrade-opt, same code as ``freqtrade-opt bench``.

Runs the real ``freqtrade backtesting`` (or ``--hyperopt``) offline on generated workspaces,
alternating stock (``FREQTRADE_OPT_LEVEL=disabled``) and plugin runs, and reports medians,
speedups and whether every result is identical (exit code 1 if not).

    python benchmarks/run.py                                   # 3x30 and 10x90, 3 repetitions
    python benchmarks/run.py --scale 10x90 --repeat 3 --json bench.json    # reference backtest
    python benchmarks/run.py --hyperopt --scale 3x30 --epochs 20 --json hyperopt.json
    python benchmarks/run.py --help
"""

from __future__ import annotations

import sys
from pathlib import Path


try:
    from freqtrade_opt_plugin.commands.bench import main
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from freqtrade_opt_plugin.commands.bench import main


if __name__ == "__main__":
    sys.exit(main())
