"""`calculate_p_value` without scipy.stats: the same float operations as scipy 1.17.1's
``ttest_1samp(returns, popmean=0)``, with `scipy.special.stdtr` (a ~0.1 s import, at install,
instead of scipy.stats' ~0.5 s; with `lazy_imports` a backtest then does not load scipy.stats).

For a float64 sample ``a`` of ``n >= 2`` finite values scipy computes (``_axis_nan_policy``
hands the Series over as an array; ``ttest_1samp``, ``_var``, ``_moment``, ``_demean``,
``_get_pvalue``, ``_SimpleStudentT``)::

    mean = np.mean(a, axis=-1);  d = mean - 0.0
    center = np.mean(a, axis=-1, keepdims=True);  v = np.mean((a - center) ** 2, axis=-1)
    v *= n / (n - 1)            (n as a float64 array)
    t = d / np.sqrt(v / n)      (divide / invalid ignored)
    p = 2 * special.stdtr(float64(n - 1), -abs(t))

which is reproduced here call for call, before Freqtrade's own ``std() == 0`` check (repeated as
is, after it, so that a delegated call does not emit that check's warnings twice).
Delegated to ``wrapped`` (Freqtrade's original): returns that are not a float64 Series (scipy
computes float32 in float32), NaN or infinite values (scipy's NaN propagation), samples where
scipy warns of catastrophic cancellation (``_demean``) and any numpy over/underflow warning
scipy would emit (the computation runs with ``np.errstate(over/invalid/divide="raise")``), so
those warnings come from the original, once. Guard: a scipy other than
`lazy_imports.VERIFIED_SCIPY` is not patched (the factory raises, status shows why).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from freqtrade_opt_plugin import lazy_imports
from freqtrade_opt_plugin.registry import BenchCase, Optimization, VerifyCase


_TARGET = "freqtrade.data.metrics:calculate_p_value"
_EPS10 = float(np.finfo(np.float64).eps) * 10  # scipy's _demean precision-loss threshold
_FLOAT64 = np.dtype(np.float64)
_ZERO = np.asarray(0.0)  # popmean=0, promoted to float64 by scipy

PValue = Callable[[pd.DataFrame, float], float]


def _stdtr() -> Callable[..., Any]:
    from scipy import special

    return special.stdtr


def ttest_pvalue(a: np.ndarray, stdtr: Callable[..., Any] | None = None) -> float | None:
    """Two-sided p-value of ``ttest_1samp(a, 0)`` for a 1-d float64 array of n >= 2 finite values;
    None where scipy would warn (the caller then runs the original)."""
    n = a.shape[0]
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            mean = np.mean(a, axis=-1)
            center = np.mean(a, axis=-1, keepdims=True)
            centered = a - center
            with np.errstate(divide="ignore", invalid="ignore"):
                relative = np.max(np.abs(centered), axis=-1, keepdims=True) / np.abs(center)
            if np.any(relative < _EPS10):
                return None  # scipy warns "Precision loss occurred in moment calculation"
            var = np.mean(centered**2, axis=-1)
            count = np.asarray(n, dtype=np.float64)
            var *= count / (count - 1)
            denom = np.sqrt(var / n)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.divide(mean - _ZERO, denom)[()]
            prob = 2 * (stdtr or _stdtr())(np.asarray(n - 1, dtype=np.float64), -np.abs(t))
    except FloatingPointError:
        return None  # numpy would warn in scipy's computation: let the original do it
    return float(prob)


def factory(wrapped: PValue) -> PValue:
    """The replacement in front of `wrapped`; refuses a scipy that was not verified."""
    if (problem := lazy_imports.scipy_problem()) is not None:
        raise RuntimeError(problem)
    # Imported here, at install (start-up), not in the first call: the telemetry compares the
    # per-call cost with the original's, whose scipy imports were paid at start-up too.
    stdtr = _stdtr()

    def calculate_p_value(trades: pd.DataFrame, starting_balance: float) -> float:
        if len(trades) < 2:
            return 1.0
        returns = trades["profit_abs"] / starting_balance
        if not isinstance(returns, pd.Series) or returns.dtype != _FLOAT64:
            return wrapped(trades, starting_balance)
        values = returns.to_numpy()
        if values.ndim != 1 or not np.isfinite(values).all():
            return wrapped(trades, starting_balance)
        # The t-test first (silently): where scipy would warn, the original runs alone, so each
        # warning (of pandas' std too) is emitted once, as without this optimization.
        p_value = ttest_pvalue(values, stdtr)
        if p_value is None:
            return wrapped(trades, starting_balance)
        if returns.std() == 0:
            return 1.0
        return p_value

    calculate_p_value.__wrapped__ = wrapped  # type: ignore[attr-defined]
    calculate_p_value.__doc__ = wrapped.__doc__
    return calculate_p_value


def describe() -> dict[str, str]:
    """For ``freqtrade-opt status``: the scipy guard and the deferred scipy.stats import."""
    return {"scipy": lazy_imports.scipy_problem() or "verified version",
            **lazy_imports.describe()}


def verify_p_value(subject: Any, inputs: Any) -> Iterator[Any]:
    """``freqtrade-opt verify``: on the trades of all pairs, then of each pair."""
    if (problem := inputs.trades_problem()) is not None:
        yield subject.skip(problem)
        return
    for pair, trades in inputs.trade_scopes():
        compared = subject.compare(trades, inputs.starting_balance, label="p-value")
        yield subject.check(pair, f"starting_balance={inputs.starting_balance}", compared.status)


def _bench_setup() -> tuple[tuple, dict]:
    from freqtrade_opt_plugin.offline.datagen import synthetic_trades

    return (synthetic_trades(2000), 1000.0), {}


OPTIMIZATION = Optimization(
    name=lazy_imports.NAME,
    target=_TARGET,
    factory=factory,
    tier=lazy_imports.TIER,
    fingerprints={"2026.9": "1713bb53d31f8a80"},
    description=(
        "Computes the report's p-value (scipy's one-sample t-test) with numpy and "
        "scipy.special.stdtr, so a backtest process need not load scipy.stats (deferred to its "
        "first use when the switch is on in the environment)"
    ),
    default_percentage=100,
    performance_threshold=1.0,
    mutates_arguments=False,
    verify_case=VerifyCase(verify_p_value, planned=lambda inputs: 1 + len(inputs.pairs)),
    bench_case=BenchCase(_bench_setup, description="2000 trades"),
)
