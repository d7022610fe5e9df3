"""freqtrade-opt-example: a third-party optimization package, as a user would write one.

It registers through the ``freqtrade_opt`` entry point (``example = freqtrade_opt_example``) one
optimization, ``example_cagr``: a result cache in front of ``freqtrade.data.metrics:
calculate_cagr`` (pure arithmetic on three numbers; Freqtrade's reports call it once per strategy
and period). Everything freqtrade-opt needs comes with the record: the factory, the verified
fingerprint, a verify case and a bench case. The plugin's own code is not touched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from freqtrade_opt_plugin.hookspecs import hookimpl
from freqtrade_opt_plugin.registry import BenchCase, Optimization, OptimizationLevel, VerifyCase


TARGET = "freqtrade.data.metrics:calculate_cagr"
CALLS: list[str] = []  # "hit" / "miss", for the tests


def factory(wrapped: Callable[[int, float, float], float]) -> Callable[[int, float, float], float]:
    """A per-process cache of `wrapped`'s results, keyed by the exact (typed) arguments."""

    @functools.lru_cache(maxsize=1024, typed=True)
    def compute(days_passed: Any, starting_balance: Any, final_balance: Any) -> float:
        CALLS.append("miss")
        return wrapped(days_passed, starting_balance, final_balance)

    def calculate_cagr(days_passed: int, starting_balance: float, final_balance: float) -> float:
        """CAGR, reused for arguments seen before (same result as Freqtrade's)."""
        misses = compute.cache_info().misses
        result = compute(days_passed, starting_balance, final_balance)
        if compute.cache_info().misses == misses:
            CALLS.append("hit")
        return result

    return calculate_cagr


def verify_cagr(subject: Any, inputs: Any) -> Iterator[Any]:
    """Per pair and for all pairs: the CAGR of the trades' profit over their period (twice,
    so the second comparison goes through the cache)."""
    if (problem := inputs.trades_problem()) is not None:
        yield subject.skip(problem)
        return
    start = float(inputs.starting_balance or 1000.0)
    for pair, trades in inputs.trade_scopes():
        days = max(1, (trades["close_date"].max() - trades["open_date"].min()).days)
        final = start + float(trades["profit_abs"].sum())
        for variant in ("cold", "warm"):
            yield subject.check(pair, variant, subject.compare(days, start, final).status)


OPTIMIZATION = Optimization(
    name="example_cagr",
    target=TARGET,
    factory=factory,
    priority=100,  # a result cache
    tier=OptimizationLevel.CONSERVATIVE,
    fingerprints={"2026.9": "1383d279256b5967"},
    description="Example third-party plugin: reuses calculate_cagr results per argument triple",
    mutates_arguments=False,
    performance_threshold=100.0,  # an example: never switched off for speed
    verify_case=VerifyCase(verify_cagr, planned=lambda inputs: 2 * (1 + len(inputs.pairs))),
    bench_case=BenchCase(lambda: ((30, 1000.0, 1234.5), {}), repeat=5,
                         description="30 days, 1000 -> 1234.5"),
)


@hookimpl
def freqtrade_opt_register_optimizations() -> list[Optimization]:
    return [OPTIMIZATION]
