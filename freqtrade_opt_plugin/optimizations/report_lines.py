"""Per-pair and per-tag report lines computed on the few columns they read.

``generate_pair_metrics`` and ``generate_tag_metrics`` (called 5 times per hyperopt epoch and per
backtest by ``generate_strategy_stats``) filter the whole trades frame once per pair / tag group
(``results[results["pair"] == pair]``, ``groupby``) and hand each subset to
``_generate_result_line``, which filters it again several times (wins, draws, losses, winrate,
expectancy, sortino). Every such row filter copies all ~40 columns of the trades frame, pyarrow
string columns included: that copying is most of the cost, while a line reads four columns only.

These replacements call Freqtrade's own function (``wrapped``) with the same trades frame
restricted to the columns the computation reads (`NEEDED` plus the pair / tag columns), same
rows, same index, same column dtypes. Every value of a line is a column-wise computation on those
columns (sums, means, standard deviations, the drawdown sorted by ``close_date``, scipy's t-test),
so the lines are identical by construction; the differential tests compare them with the
original on real backtest results and generated trade frames (dict equality, float bits, key
order).

That holds only while the functions a line calls are the ones whose column reads were checked:
`READERS` are fingerprinted (`registry.fingerprint`, which sees through Routers to the original)
as the module globals Freqtrade's code looks them up from; any other function there (a
third-party patch) sends the call to ``wrapped`` with the full frame. So do frames outside the
model: not a DataFrame, non-unique or non-string column labels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from freqtrade_opt_plugin.registry import (
    Optimization,
    OptimizationLevel,
    VerifyCase,
    fingerprint,
)


_REPORTS = "freqtrade.optimize.optimize_reports.optimize_reports"
_METRICS = "freqtrade.data.metrics"

#: The columns `_generate_result_line` and the metric functions it calls read.
NEEDED = ("close_date", "profit_abs", "profit_ratio", "trade_duration")

#: (module, name) of every function a line runs, with its verified fingerprint (2026.9); each was
#: read for the columns it uses (`NEEDED` only: profit_abs, profit_ratio, trade_duration, and
#: close_date through calculate_max_drawdown's date_col default).
READERS: dict[tuple[str, str], str] = {
    (_REPORTS, "_generate_result_line"): "bd6506ce63cd76ef",
    (_REPORTS, "calculate_max_drawdown"): "8b608f74ad436f30",
    (_REPORTS, "calculate_expectancy"): "f8b30f4c97751481",
    (_REPORTS, "calculate_cagr"): "1383d279256b5967",
    (_REPORTS, "calculate_sortino"): "1a8eb02407251176",
    (_REPORTS, "calculate_sharpe"): "3e33e8bfb24aa9d2",
    (_REPORTS, "calculate_calmar"): "936acc3a869377c6",
    (_REPORTS, "calculate_sqn"): "b854fddffc61307c",
    (_REPORTS, "calculate_p_value"): "1713bb53d31f8a80",
    (_METRICS, "calculate_max_drawdown"): "8b608f74ad436f30",
    (_METRICS, "_calc_drawdown_series"): "3479ac7bb2f36ebf",
    (_METRICS, "_calculate_annualized_ratio"): "db93232853c5a7b4",
}


@functools.lru_cache(maxsize=64)
def _fingerprint_of(func: Callable[..., Any]) -> str | None:
    try:
        return fingerprint(func)
    except (OSError, TypeError, SyntaxError, ValueError):  # no source, or a __wrapped__ loop
        return None


def readers_verified(exclude: str | None = None) -> bool:
    """Whether every function a line runs (but `exclude`, a name in the reports module) is one
    whose column reads were checked."""
    import sys

    for (module_name, name), expected in READERS.items():
        if module_name == _REPORTS and name == exclude:
            continue
        module = sys.modules.get(module_name)
        func = getattr(module, name, None) if module is not None else None
        if func is None or _fingerprint_of(func) != expected:
            return False
    return True


def slim(results: Any, extra: Iterable[str]) -> Any:
    """`results` with only the columns `NEEDED` and `extra` that it has (same rows, index and
    dtypes), or None when the frame is outside the model."""
    import pandas as pd

    if type(results) is not pd.DataFrame:
        return None
    columns = results.columns
    if not columns.is_unique or not all(isinstance(c, str) for c in columns):
        return None
    wanted = set(NEEDED).union(extra)
    keep = [c for c in columns if c in wanted]
    if len(keep) == len(columns):
        return results
    if not keep:
        return None  # an empty frame's emptiness would change
    return results[keep]


def pair_factory(wrapped: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
    """``generate_pair_metrics`` in front of `wrapped`."""

    def generate_pair_metrics(
        pairlist: list[str],
        stake_currency: str,
        starting_balance: float,
        results: Any,
        min_date: Any,
        max_date: Any,
        skip_nan: bool = False,
    ) -> list[dict]:
        """
        Generates and returns a list for the given backtest data and the results dataframe
        (Freqtrade's own computation on the columns it reads).
        """
        narrow = slim(results, ("pair",)) if readers_verified() else None
        return wrapped(pairlist, stake_currency, starting_balance,
                       results if narrow is None else narrow, min_date, max_date, skip_nan)

    return generate_pair_metrics


def tag_factory(wrapped: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
    """``generate_tag_metrics`` in front of `wrapped`."""

    def generate_tag_metrics(
        tag_type: Any,
        starting_balance: float,
        results: Any,
        min_date: Any,
        max_date: Any,
        skip_nan: bool = False,
    ) -> list[dict]:
        """
        Generates and returns a list of metrics for the given tag trades and the results
        dataframe (Freqtrade's own computation on the columns it reads).
        """
        narrow = None
        tags = tag_type if isinstance(tag_type, list) else [tag_type]
        if all(isinstance(t, str) for t in tags) and readers_verified():
            narrow = slim(results, tags)
        return wrapped(tag_type, starting_balance, results if narrow is None else narrow,
                       min_date, max_date, skip_nan)

    return generate_tag_metrics


TAG_TYPES: tuple[Any, ...] = ("enter_tag", "exit_reason", ["enter_tag", "exit_reason"])


def verify_inputs(inputs: Any) -> tuple[Any, Any, float] | str:
    """(min_date, max_date, starting balance) of the user's trades for ``verify``, or why not."""
    if (problem := inputs.trades_problem()) is not None:
        return problem
    trades = inputs.trades
    try:
        min_date = trades["open_date"].min().to_pydatetime()
        max_date = trades["close_date"].max().to_pydatetime()
    except Exception as exc:  # no / non-datetime date columns
        return f"trades without usable open/close dates: {exc}"
    return min_date, max_date, float(inputs.starting_balance or 1000.0)


def verify_pair_lines(subject: Any, inputs: Any) -> Any:
    """``freqtrade-opt verify``: the per-pair table of all trades, and of the left-open ones."""
    found = verify_inputs(inputs)
    if isinstance(found, str):
        yield subject.skip(found)
        return
    min_date, max_date, balance = found
    trades = inputs.trades
    stake = inputs.config.get("stake_currency", "")
    for variant, subset, skip_nan in (("all trades", trades, False),
                                      ("force_exit, skip_nan", trades.loc[
                                          trades.get("exit_reason") == "force_exit"]
                                       if "exit_reason" in trades else trades, True)):
        compared = subject.compare(list(inputs.pairs), stake, balance, subset, min_date,
                                   max_date, skip_nan, label="trades after the call")
        yield subject.check("all pairs", variant, compared.status)


def verify_tag_lines(subject: Any, inputs: Any) -> Any:
    """``freqtrade-opt verify``: the enter-tag, exit-reason and combined tables of all trades."""
    found = verify_inputs(inputs)
    if isinstance(found, str):
        yield subject.skip(found)
        return
    min_date, max_date, balance = found
    for tag_type in TAG_TYPES:
        compared = subject.compare(tag_type, balance, inputs.trades, min_date, max_date, False,
                                   label="trades after the call")
        yield subject.check("all pairs", str(tag_type), compared.status)


OPTIMIZATIONS = (
    Optimization(
        name="report_pair_lines",
        target=f"{_REPORTS}:generate_pair_metrics",
        factory=pair_factory,
        tier=OptimizationLevel.STANDARD,
        fingerprints={"2026.9": "c23fa8fbecf0df4a"},
        description=("Per-pair report lines computed by Freqtrade's code on the trades frame "
                     "restricted to the columns they read (no copies of ~40 columns per filter)"),
        performance_threshold=0.8,
        mutates_arguments=False,
        verify_case=VerifyCase(verify_pair_lines, planned=lambda inputs: 2),
    ),
    Optimization(
        name="report_tag_lines",
        target=f"{_REPORTS}:generate_tag_metrics",
        factory=tag_factory,
        tier=OptimizationLevel.STANDARD,
        fingerprints={"2026.9": "820c9404cc37c410"},
        description=("Per-tag report lines (enter tag, exit reason, both) computed by "
                     "Freqtrade's code on the trades frame restricted to the columns they read"),
        performance_threshold=0.8,
        mutates_arguments=False,
        verify_case=VerifyCase(verify_tag_lines, planned=lambda inputs: len(TAG_TYPES)),
    ),
)
