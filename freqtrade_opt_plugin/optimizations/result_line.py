"""``_generate_result_line`` (one line of the per-pair / per-tag report tables) on column arrays.

Freqtrade builds 20-30 such lines per hyperopt epoch and per backtest. Each line filters its
trades frame seven times (wins, draws, losses, winrate, expectancy's winners and losers,
sortino's losers), each filter a copy of every column, and runs ~40 pandas Series operations whose
per-call overhead dwarfs the arithmetic on a few hundred values. This replacement reads the three
columns once and performs the same reductions on the same values in the same order:

* ``Series.sum / mean / std`` dispatch (``Series._reduce``) to ``pandas.core.nanops.nansum /
  nanmean / nanstd`` with ``skipna=True`` (and ``min_count=0`` / ``ddof``) on the column's
  ndarray, then ``maybe_unbox_numpy_scalar``: the very same calls are made here on the same
  arrays (a boolean-mask subset of a column is the same compact array a ``.loc`` filter gives).
  ``np.std(series)`` is ``series.std(ddof=0)``.
* ``series / starting_balance`` is ``ndarray / starting_balance`` below pandas' numexpr threshold
  (a million values); scipy's ``ttest_1samp`` converts a Series to the same ndarray.
* Freqtrade's pure helpers (``calculate_cagr``, ``_calculate_annualized_ratio``) and
  ``calculate_max_drawdown`` (the module global, so an optimization installed there still runs)
  are called, the latter once: the line and ``calculate_calmar`` call it with the same arguments,
  and it is a pure function of them.

Delegated to ``wrapped`` (Freqtrade's original, or the next optimization): anything but a
``pandas.DataFrame`` with unique column labels and float64 ``profit_abs`` / ``profit_ratio`` and
int64 / float64 ``trade_duration`` columns; NaN or infinite values in them; a million rows or
more; non-datetime dates; a ``starting_balance`` that is not an int or float; and every call while
a function it reproduces or calls is not the verified one (`report_lines.readers_verified`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel, VerifyCase


_REPORTS = "freqtrade.optimize.optimize_reports.optimize_reports"
_TARGET = f"{_REPORTS}:_generate_result_line"
_FLOAT64 = np.dtype(np.float64)
_DURATION_DTYPES = (np.dtype(np.int64), _FLOAT64)
_NUMEXPR_MIN_ELEMENTS = 1_000_000


def factory(wrapped: Callable[..., dict]) -> Callable[..., dict]:
    """The replacement in front of `wrapped` (which gets the inputs outside the fast model)."""

    def _generate_result_line(
        result: Any,
        min_date: datetime,
        max_date: datetime,
        starting_balance: float,
        first_column: str | list[str],
    ) -> dict:
        """
        Generate one result dict, with "first_column" as key (Freqtrade's values, computed on
        the column arrays).
        """
        line = fast_line(result, min_date, max_date, starting_balance, first_column)
        if line is not None:
            return line
        return wrapped(result, min_date, max_date, starting_balance, first_column)

    return _generate_result_line


def _columns(result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    import pandas as pd

    if type(result) is not pd.DataFrame or not result.columns.is_unique:
        return None
    if len(result) >= _NUMEXPR_MIN_ELEMENTS or len(result.columns) == 0:
        return None
    try:
        series = [result["profit_abs"], result["profit_ratio"], result["trade_duration"]]
    except KeyError:
        return None  # the original raises its own error
    dtypes = [s.dtype for s in series]
    if not all(isinstance(d, np.dtype) for d in dtypes):
        return None
    if dtypes[0] != _FLOAT64 or dtypes[1] != _FLOAT64 or dtypes[2] not in _DURATION_DTYPES:
        return None
    arrays = [s.to_numpy() for s in series]
    for values in arrays:
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            return None
    return arrays[0], arrays[1], arrays[2]


def fast_line(result: Any, min_date: Any, max_date: Any, starting_balance: Any,
              first_column: Any) -> dict | None:
    """The line, or None for inputs outside the model (see the module docstring)."""
    import sys

    from freqtrade_opt_plugin.optimizations.report_lines import readers_verified

    if type(starting_balance) not in (int, float) and not isinstance(
        starting_balance, (np.floating, np.integer)
    ):
        return None
    if not isinstance(min_date, datetime) or not isinstance(max_date, datetime):
        return None
    if not readers_verified(exclude="_generate_result_line"):  # the Router verified the target
        return None
    reports = sys.modules[_REPORTS]
    metrics = sys.modules["freqtrade.data.metrics"]
    if reports.calculate_max_drawdown is not metrics.calculate_max_drawdown:
        return None  # the line and calculate_calmar would not run the same drawdown
    columns = _columns(result)
    if columns is None:
        return None
    return _line(reports, metrics, columns, len(result), min_date, max_date, starting_balance,
                 first_column, result)


def _reducers() -> tuple[Callable, Callable, Callable]:
    """SUM, MEAN, STD exactly as ``Series.sum()`` / ``.mean()`` / ``.std(ddof)`` compute them."""
    from pandas.core import nanops
    from pandas.core.dtypes.cast import maybe_unbox_numpy_scalar

    def total(values: np.ndarray) -> Any:
        return maybe_unbox_numpy_scalar(nanops.nansum(values, skipna=True, min_count=0),
                                        object_with_dtype=values)

    def mean(values: np.ndarray) -> Any:
        return maybe_unbox_numpy_scalar(nanops.nanmean(values, skipna=True),
                                        object_with_dtype=values)

    def std(values: np.ndarray, ddof: int) -> Any:
        return maybe_unbox_numpy_scalar(nanops.nanstd(values, skipna=True, ddof=ddof),
                                        object_with_dtype=values)

    return total, mean, std


def _line(reports: Any, metrics: Any, columns: tuple[np.ndarray, np.ndarray, np.ndarray],
          n: int, min_date: datetime, max_date: datetime, starting_balance: Any,
          first_column: Any, result: Any) -> dict:
    total, mean, std = _reducers()
    profit_abs, profit_ratio, duration = columns
    wins = profit_abs > 0
    losses = profit_abs < 0
    winners = profit_abs[wins]
    losers = profit_abs[losses]
    n_wins = int(np.count_nonzero(wins))
    n_losses = int(np.count_nonzero(losses))
    n_draws = int(np.count_nonzero(profit_abs == 0))

    profit_sum = total(profit_abs)
    profit_total = profit_sum / starting_balance
    backtest_days = (max_date - min_date).days or 1
    final_balance = starting_balance + total(profit_abs)
    winning_profit = total(winners)
    losing_profit = total(losers)
    profit_factor = winning_profit / abs(losing_profit) if losing_profit else 0.0

    drawdown = None
    if n > 0:
        try:
            drawdown = reports.calculate_max_drawdown(
                result, value_col="profit_abs", starting_balance=starting_balance
            )
        except ValueError:
            drawdown = None

    # calculate_expectancy
    expectancy, expectancy_ratio = 0.0, 100.0
    if n > 0:
        loss_sum = abs(losing_profit)
        average_win = (winning_profit / n_wins) if n_wins > 0 else 0
        average_loss = (loss_sum / n_losses) if n_losses > 0 else 0
        winrate = n_wins / n
        loserate = n_losses / n
        expectancy = (winrate * average_win) - (loserate * average_loss)
        if average_loss > 0:
            risk_reward_ratio = average_win / average_loss
            expectancy_ratio = ((1 + risk_reward_ratio) * winrate) - 1

    annualized = metrics._calculate_annualized_ratio
    returns = profit_abs / starting_balance
    dated = n > 0 and min_date != max_date
    days_period = max(1, (max_date - min_date).days)
    if dated:
        sortino = annualized(total(returns) / days_period, std(losers / starting_balance, 0))
        sharpe = annualized(total(returns) / days_period, std(returns, 0))
        if drawdown is None:
            calmar = 0.0  # calculate_max_drawdown raised ValueError
        else:
            calmar = annualized(profit_sum / starting_balance / days_period * 100,
                                drawdown.relative_account_drawdown)
    else:
        sortino = sharpe = 0
        calmar = 0.0

    if n == 0:
        sqn = 0.0
    else:
        profits_std = std(returns, 1)
        if profits_std != 0 and not np.isnan(profits_std):
            sqn = math.sqrt(n) * (mean(returns) / profits_std)
        else:
            sqn = -100.0
        sqn = round(sqn, 4)

    if n < 2 or std(returns, 1) == 0:
        p_value = 1.0
    else:
        p_value = _p_value(returns)

    profit_mean = mean(profit_ratio) if n > 0 else 0.0
    return {
        "key": first_column,
        "trades": n,
        "profit_mean": profit_mean,
        "profit_mean_pct": round(mean(profit_ratio) * 100.0, 2) if n > 0 else 0.0,
        "profit_total_abs": total(profit_abs),
        "profit_total": profit_total,
        "profit_total_pct": round(profit_total * 100.0, 2),
        "duration_avg": str(timedelta(minutes=round(mean(duration)))) if n > 0 else "0:00",
        "wins": n_wins,
        "draws": n_draws,
        "losses": n_losses,
        "winrate": n_wins / n if n else 0.0,
        "cagr": reports.calculate_cagr(backtest_days, starting_balance, final_balance),
        "expectancy": expectancy,
        "expectancy_ratio": expectancy_ratio,
        "sortino": sortino,
        "sharpe": sharpe,
        "calmar": calmar,
        "sqn": sqn,
        "p_value": p_value,
        "profit_factor": profit_factor,
        "max_drawdown_account": drawdown.relative_account_drawdown if drawdown else 0.0,
        "max_drawdown_abs": drawdown.drawdown_abs if drawdown else 0.0,
    }


def verify_result_line(subject: Any, inputs: Any) -> Any:
    """``freqtrade-opt verify``: the line of all trades and of each pair's trades."""
    from freqtrade_opt_plugin.optimizations.report_lines import verify_inputs

    found = verify_inputs(inputs)
    if isinstance(found, str):
        yield subject.skip(found)
        return
    min_date, max_date, balance = found
    for pair, trades in inputs.trade_scopes():
        compared = subject.compare(trades, min_date, max_date, balance, pair,
                                   label="trades after the call")
        yield subject.check(pair, "line", compared.status)


OPTIMIZATION = Optimization(
    name="report_result_line",
    target=_TARGET,
    factory=factory,
    tier=OptimizationLevel.STANDARD,
    fingerprints={"2026.9": "bd6506ce63cd76ef"},
    description=(
        "One report line (per pair / tag / total) from the column arrays with pandas' own "
        "reductions, instead of seven row filters and ~40 Series operations"
    ),
    default_percentage=100,
    performance_threshold=0.8,
    mutates_arguments=False,
    verify_case=VerifyCase(verify_result_line, planned=lambda inputs: 1 + len(inputs.pairs)),
)


def _p_value(returns: np.ndarray) -> float:
    """scipy's ``ttest_1samp(returns, popmean=0)`` p-value: `p_value.ttest_pvalue` (bit-identical,
    without loading ``scipy.stats``) for the verified scipy where it applies, else scipy's own."""
    from freqtrade_opt_plugin import lazy_imports
    from freqtrade_opt_plugin.optimizations.p_value import ttest_pvalue

    if (returns.dtype == np.float64 and returns.ndim == 1 and np.isfinite(returns).all()
            and lazy_imports.scipy_problem() is None
            and (fast := ttest_pvalue(returns)) is not None):
        return fast
    from scipy import stats

    return float(stats.ttest_1samp(returns, popmean=0)[1])
