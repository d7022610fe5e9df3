"""Exact fast trade loop: ``Backtesting.backtest`` touching only the pair-candles where something
can happen (issue #14).

* `eligibility` decides per run whether the driver provably reproduces Freqtrade's loop;
* `guard` fingerprints every Freqtrade function whose behaviour it reproduces;
* `timeline` schedules every pair's rows (and entry signals) before the loop;
* `driver` walks the candles and calls Freqtrade's own ``backtest_loop`` where needed;
* `detail` runs a main candle's later timeframe-detail indexes as Freqtrade's generator does;
* `exit_scan` (optional) skips an open trade's candles on which no exit can happen.

`factory(original)` returns the replacement (Router contract: `original` is what would run
without this optimization); an ineligible run calls it unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel


logger = logging.getLogger(__name__)

_TARGET = "freqtrade.optimize.backtesting:Backtesting.backtest"


class Decisions:
    """The eligibility decisions made in this process (logged once each; read by `describe`)."""

    def __init__(self) -> None:
        self.logged: set[str] = set()
        self.last: str | None = None
        self.runs = {"fast": 0, "original": 0}

    def record(self, strategy: str, text: str, fast: bool) -> None:
        self.last = f"{strategy}: {text}"
        self.runs["fast" if fast else "original"] += 1
        if self.last not in self.logged:
            self.logged.add(self.last)
            logger.info("freqtrade-opt fast_loop: %s", self.last)


DECISIONS = Decisions()


def describe() -> dict[str, Any]:
    """The latest eligibility decision of this process and the run counts (status/report)."""
    from freqtrade_opt_plugin.optimizations.fast_loop import guard

    bad = guard.mismatches()
    return {
        "guard": "verified" if not bad else f"unverified: {', '.join(bad)}",
        "last_decision": DECISIONS.last,
        "runs": dict(DECISIONS.runs),
    }


def factory(original: Callable[..., dict]) -> Callable[..., dict]:
    """The replacement of ``Backtesting.backtest``; `original` runs every ineligible run."""
    from freqtrade_opt_plugin.optimizations.fast_loop import driver, eligibility

    def backtest(self: Any, processed: dict, start_date: datetime, end_date: datetime) -> dict:
        """
        Implement backtesting functionality
        Same result and side effects as Freqtrade's original; the candle loop visits only the
        pair-candles with an open trade or an entry signal when the run is eligible.
        """
        plan = eligibility.decide(self)
        DECISIONS.record(type(self.strategy).__name__, plan.describe(), plan.eligible)
        if not plan.eligible:
            return original(self, processed, start_date, end_date)
        return driver.run_backtest(self, processed, start_date, end_date, plan)

    return backtest


def _propagates() -> tuple[type[BaseException], ...]:
    from freqtrade.exceptions import DependencyException, StrategyError

    return (DependencyException, StrategyError)  # abort request; strategy errors as in stock


OPTIMIZATION = Optimization(
    name="fast_loop",
    target=_TARGET,
    factory=factory,
    tier=OptimizationLevel.STANDARD,
    fingerprints={"2026.9": "96e66894d84adb61"},
    description=(
        "Runs the trade loop only on pair-candles with an open trade or an entry signal "
        "(and, with the exit scanner, only on candles where an exit can happen); "
        "other runs use Freqtrade's loop"
    ),
    default_percentage=100,
    performance_threshold=1.0,
    propagates=_propagates(),
    mutates_arguments=True,
    shadow=False,
)
