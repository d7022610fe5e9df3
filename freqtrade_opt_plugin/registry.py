"""The `Optimization` record and the source fingerprints that guard it."""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum


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


@dataclass(frozen=True)
class Optimization:
    """An exact-equivalent replacement for one Freqtrade function.

    `target` is ``"module:qualname"`` of the original (``"pkg.mod:Class.method"`` for methods).
    `replacement` has the original's signature and must return an identical result with the same
    side effects. `fingerprints` maps Freqtrade versions to `fingerprint()` of the original source
    the replacement was verified against: any other source is not patched.
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
    """

    name: str
    target: str
    replacement: Callable
    tier: OptimizationLevel
    fingerprints: Mapping[str, str]
    description: str = ""
    default_percentage: int = 100
    performance_threshold: float = 1.0
    min_samples: int = 5
    gate_runs: int = 1
    propagates: tuple[type[BaseException], ...] = ()
    mutates_arguments: bool = True
    shadow: bool = True

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def qualname(self) -> str:
        return self.target.partition(":")[2]

    @property
    def env_name(self) -> str:
        return "FREQTRADE_OPT_" + self.name.upper()


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
