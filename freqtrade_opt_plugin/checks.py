"""What a `registry.VerifyCase` works with: run Freqtrade's original and a replacement side by side.

`Subject.compare` runs both paths on fresh deep copies of the same arguments and compares, exactly
(`equality.first_difference`), the outcome (result or exception) and every argument after the
call; `Check` is one line of ``freqtrade-opt verify``'s table. Used by the optimizations' verify
and bench cases and by the ``verify`` / ``microbench`` commands.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from freqtrade_opt_plugin.equality import first_difference
from freqtrade_opt_plugin.registry import Optimization
from freqtrade_opt_plugin.router import is_router


ALL_PAIRS = "all pairs"
EXACT, DIFFERENT, SKIPPED = "exact", "different", "skipped"


@dataclass
class Check:
    """One comparison: `status` is "exact", "different" or "skipped"; `detail` says why."""

    optimization: str
    function: str
    pair: str
    variant: str
    status: str
    detail: str = ""


@dataclass
class Outcome:
    """What one call did: its `result`, or the `error` it raised."""

    result: Any = None
    error: BaseException | None = None


def call(func: Callable, *args: Any, **kwargs: Any) -> Outcome:
    """``func(*args, **kwargs)`` as an `Outcome` (an exception is kept, not raised)."""
    try:
        return Outcome(result=func(*args, **kwargs))
    except Exception as exc:  # compared with the other path's
        return Outcome(error=exc)


def outcome_difference(got: Outcome, expected: Outcome, where: str = "result") -> str | None:
    """Where the optimized outcome differs from the original's (exceptions included), or None."""
    if expected.error is not None or got.error is not None:
        if got.error is None:
            return (f"{where}: the original raised {type(expected.error).__name__}: "
                    f"{expected.error}, the optimized path returned {type(got.result).__name__}")
        if expected.error is None:
            return (f"{where}: the optimized path raised {type(got.error).__name__}: "
                    f"{got.error}")
        if type(got.error) is not type(expected.error) or str(got.error) != str(expected.error):
            return (f"{where}: raised {type(got.error).__name__}({got.error}) instead of "
                    f"{type(expected.error).__name__}({expected.error})")
        return None
    return first_difference(got.result, expected.result, where)


def status_of(difference: str | None, both_raised: BaseException | None = None) -> tuple[str, str]:
    """(status, detail) of a `Check` for `difference` (None: exact)."""
    if difference is not None:
        return DIFFERENT, difference
    if both_raised is not None:
        return EXACT, f"both raise {type(both_raised).__name__}: {both_raised}"
    return EXACT, ""


def resolve_original(target: str) -> Callable:
    """Freqtrade's original at ``module:qualname`` (behind a Router, if one is installed)."""
    module_name, _, qualname = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        owner = getattr(owner, part)
    return inspect.unwrap(owner, stop=lambda f: not is_router(f))


@dataclass
class Comparison:
    """Both paths run on fresh deep copies of the same arguments."""

    expected: Outcome
    got: Outcome
    expected_args: tuple[tuple, dict]  # the original's copies, after its call
    got_args: tuple[tuple, dict]
    difference: str | None

    @property
    def status(self) -> tuple[str, str]:
        return status_of(self.difference, self.expected.error)


@dataclass
class Subject:
    """One optimization under check: Freqtrade's `original` and `optimized`, the replacement
    built in front of it (``opt.build(original)``)."""

    opt: Optimization
    original: Callable
    optimized: Callable

    def check(self, pair: str, variant: str, status: tuple[str, str]) -> Check:
        return Check(self.opt.name, self.opt.qualname, pair, variant, *status)

    def skip(self, reason: str, pair: str = "-", variant: str = "") -> Check:
        return self.check(pair, variant, (SKIPPED, reason))

    def compare(self, *args: Any, label: str = "arguments after the call",
                **kwargs: Any) -> Comparison:
        """Run both paths on deep copies of the arguments; compare their outcomes (result or
        exception) and then every argument after the call (`label` names them)."""
        expected_args = copy.deepcopy((args, kwargs))
        got_args = copy.deepcopy((args, kwargs))
        expected = call(self.original, *expected_args[0], **expected_args[1])
        got = call(self.optimized, *got_args[0], **got_args[1])
        difference = outcome_difference(got, expected)
        single = len(args) == 1
        for i, (mine, theirs) in enumerate(zip(got_args[0], expected_args[0], strict=True)):
            if difference is None:
                where = label if single else f"{label} (argument {i + 1})"
                difference = first_difference(mine, theirs, where)
        for key in kwargs:
            if difference is None:
                difference = first_difference(got_args[1][key], expected_args[1][key],
                                              f"{label} ({key}=)")
        return Comparison(expected, got, expected_args, got_args, difference)
