"""The `Optimization` record and the source fingerprints that guard it."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from enum import IntEnum
from typing import Any


class OptimizationLevel(IntEnum):
    """Rollout levels, lowest to highest. An optimization is active from its tier upwards."""

    DISABLED = 0
    CONSERVATIVE = 1
    STANDARD = 2
    AGGRESSIVE = 3
    EXPERIMENTAL = 4

    @classmethod
    def parse(cls, value: str | int | OptimizationLevel) -> OptimizationLevel:
        """Accept a level name (any case) or its number; raise ValueError naming the choices."""
        if isinstance(value, cls):
            return value
        text = str(value).strip()
        if text.isdigit() and int(text) in cls._value2member_map_:
            return cls(int(text))
        try:
            return cls[text.upper()]
        except KeyError:
            accepted = ", ".join(level.name.lower() for level in cls)
            raise ValueError(f"unknown level {value!r}; accepted: {accepted}") from None


#: Built by `Optimization.factory` from `wrapped`: the replacement to install.
Factory = Callable[[Callable[..., Any]], Callable[..., Any]]


@dataclass(frozen=True)
class VerifyCase:
    """How ``freqtrade-opt verify`` checks an optimization on the user's own data.

    `run(subject, inputs)` yields `checks.Check` records: `subject` is a `checks.Subject` (the
    optimization, Freqtrade's original, the replacement built in front of it, and `compare`,
    `check` and `skip` helpers), `inputs` the `commands.verify.Inputs` loaded from the user's config
    (candles, strategy, trades). `planned(inputs)` estimates how many checks it yields (for the
    progress bar; default: one per pair plus one).
    """

    run: Callable[[Any, Any], Iterable[Any]]
    planned: Callable[[Any], int] | None = None


@dataclass(frozen=True)
class BenchCase:
    """How ``freqtrade-opt microbench`` times an optimization against Freqtrade's original.

    `setup()` returns ``(args, kwargs)`` for one call, freshly made each time (a call may modify
    them); it is not timed. `repeat` timed calls per path (original and replacement alternate).
    """

    setup: Callable[[], tuple[tuple, dict]]
    repeat: int = 15
    description: str = ""


@dataclass(frozen=True)
class Optimization:
    """An exact-equivalent replacement for one Freqtrade function.

    `target` is ``"module:qualname"`` of the original (``"pkg.mod:Class.method"`` for methods).
    The replacement has the original's signature and must return an identical result with the
    same side effects. Give exactly one of:

    * `factory(wrapped) -> replacement` (wrapt style), called once when the Router is installed.
      `wrapped` is what runs if this optimization did not exist: the next candidate on the same
      target (when its flags choose it for this call) or else Freqtrade's original. The
      replacement calls `wrapped` for inputs it does not model (or on a cache miss) and never
      looks the original up itself. An exception raised *by* `wrapped` passes through the Router
      unchanged (it is the lower layer's behaviour, not a failure of this optimization).
    * `replacement`: a plain function with no access to the original (kept for simple plugins).

    A replacement never catches its own failures to run the original itself: it raises, and the
    Router restores the argument snapshot, runs `wrapped`, counts the error and auto-disables the
    optimization at the error threshold.

    `priority`: several optimizations may target the same function; one Router holds them all,
    highest priority first (outermost, consulted first; ties by name). Result caches use 100 so a
    hit returns before a faster computation below them runs; computations keep the default 0.
    `fingerprints` maps Freqtrade versions to `fingerprint()` of the original source the
    replacement was verified against: any other source is not patched (per candidate: one whose
    fingerprint does not match is left out, the others on the target still run).
    `performance_threshold` is the highest acceptable optimized/original ratio of mean CPU time
    per call (the performance gate, see `telemetry.analysis`). `gate_runs`: runs of optimized
    calls the gate waits for before judging; 2 for caches, whose misses in one run are repaid
    by hits in the next (their cost is judged over hits and misses together).
    `propagates` lists exceptions that are part of the original's contract (e.g. an abort
    request): they pass through instead of triggering the fallback.
    `mutates_arguments=False` declares the original (and so the replacement) pure: the Router
    then skips the argument snapshot it otherwise takes to undo a failed optimized call.
    `shadow=False` excludes it from shadow verification (at level experimental a share of calls
    runs both paths on copies of the arguments): for replacements whose arguments cannot be
    copied without side effects (e.g. a method that runs strategy code).
    `verify_case` (`VerifyCase`) / `bench_case` (`BenchCase`): how ``freqtrade-opt verify`` and
    ``freqtrade-opt microbench`` exercise it. None: the case of another optimization on the same
    target is used, if any (both exercise the target, not a particular replacement); else the
    optimization is reported as not covered.
    `hot=True` asks for lean routing (`hot_router`), for tiny functions called very often (a few
    microseconds, ~100k calls per backtest) where the standard per-call bookkeeping (~1.7 us)
    would eat the gain: the flag decision is precomputed whenever the flags change, one call in
    `hot_router.SAMPLE_EVERY` per path is timed and recorded (standing for the calls since the
    previous record: `calls` stay exact, `total_seconds` is extrapolated from the timed calls),
    no shadow runs, no memory sampling; a failing replacement still falls back (every error is
    recorded). When every candidate on a target is hot and all are off in this process, the
    original itself is bound in the Router's place (re-bound when the flags change).
    """

    name: str
    target: str
    replacement: Callable | None = None
    _: KW_ONLY
    tier: OptimizationLevel
    fingerprints: Mapping[str, str]
    factory: Factory | None = None
    priority: int = 0
    description: str = ""
    default_percentage: int = 100
    performance_threshold: float = 1.0
    min_samples: int = 5
    gate_runs: int = 1
    propagates: tuple[type[BaseException], ...] = ()
    mutates_arguments: bool = True
    shadow: bool = True
    verify_case: VerifyCase | None = None
    bench_case: BenchCase | None = None
    hot: bool = False

    def __post_init__(self) -> None:
        if (self.replacement is None) == (self.factory is None):
            raise ValueError(f"optimization {self.name!r}: give exactly one of `replacement` "
                             f"and `factory`")
        if not isinstance(self.priority, int):
            raise TypeError(f"optimization {self.name!r}: priority must be an int, "
                            f"got {self.priority!r}")

    def build(self, wrapped: Callable[..., Any]) -> Callable[..., Any]:
        """The replacement to install in front of `wrapped` (see `factory`)."""
        if self.factory is not None:
            return self.factory(wrapped)
        assert self.replacement is not None
        return self.replacement

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def qualname(self) -> str:
        return self.target.partition(":")[2]

    @property
    def env_name(self) -> str:
        return "FREQTRADE_OPT_" + self.name.upper()


def case_of(opt: Optimization, kind: str, optimizations: Iterable[Optimization] = ()
            ) -> Any:
    """`opt`'s own ``verify_case`` / ``bench_case`` (`kind`), else that of another of
    `optimizations` on the same target (outermost first), else None."""
    own = getattr(opt, kind)
    if own is not None:
        return own
    for other in ordered(o for o in optimizations if o.target == opt.target):
        if getattr(other, kind) is not None:
            return getattr(other, kind)
    return None


def ordered(candidates: Iterable[Optimization]) -> list[Optimization]:
    """Candidates on one target, outermost first: higher `priority` first, ties by name."""
    return sorted(candidates, key=lambda opt: (-opt.priority, opt.name))


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def verified_versions(fingerprints: Mapping[str, str], found: str) -> str | None:
    """The Freqtrade versions whose verified fingerprint is `found` (``"2026.2 .. 2026.9"`` or
    one version), or None when none is."""
    versions = sorted((v for v, fp in fingerprints.items() if fp == found), key=_version_key)
    if not versions:
        return None
    return versions[0] if len(versions) == 1 else f"{versions[0]} .. {versions[-1]}"


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def fingerprint_source(source: str) -> str:
    """Fingerprint of one function's source: its AST without docstrings, comments or layout."""
    tree = _strip_docstrings(ast.parse(textwrap.dedent(source)))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()[:16]


def fingerprint(func: Callable) -> str:
    """Fingerprint of a live function (see `fingerprint_source`)."""
    return fingerprint_source(inspect.getsource(inspect.unwrap(func)))


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def find_definition(module_source: str, qualname: str) -> str | None:
    """Source of `qualname` (``func`` or ``Class.method``) in a module's source, or None."""
    tree = ast.parse(module_source)
    nodes: list[ast.AST] = [tree]
    for part in qualname.split("."):
        found = None
        for parent in nodes:
            for child in getattr(parent, "body", []):
                if isinstance(child, _DEFINITIONS) and child.name == part:
                    found = child
        if found is None:
            return None
        nodes = [found]
    node = nodes[0]
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    lines = module_source.splitlines(keepends=True)
    return "".join(lines[first - 1 : node.end_lineno])


def unchanged(wrapped: Callable[..., Any]) -> Callable[..., Any]:
    """Factory of an optimization that acts elsewhere (at start-up or exit) and registers its
    target only for the switch, the version guard and the line in ``status``: the target runs
    unchanged."""

    @functools.wraps(wrapped)
    def target(*args: Any, **kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    return target
