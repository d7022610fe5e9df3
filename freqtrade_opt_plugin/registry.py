"""The `Optimization` record and the source fingerprints that guard it."""

from __future__ import annotations

import ast
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
    `performance_threshold` is the highest acceptable optimized/original median time ratio.
    `propagates` lists exceptions that are part of the original's contract (e.g. an abort
    request): they pass through instead of triggering the fallback.
    `mutates_arguments=False` declares the original (and so the replacement) pure: the Router
    then skips the argument snapshot it otherwise takes to undo a failed optimized call.
    `shadow=False` excludes it from shadow verification (at level experimental a share of calls
    runs both paths on copies of the arguments): for replacements whose arguments cannot be
    copied without side effects (e.g. a method that runs strategy code).
    `verify_case` / `bench_case`: how ``freqtrade-opt verify`` and ``freqtrade-opt bench`` exercise
    it (see `freqtrade_opt_plugin.verify` and `freqtrade_opt_plugin.bench`); None: not covered.
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
    propagates: tuple[type[BaseException], ...] = ()
    mutates_arguments: bool = True
    shadow: bool = True
    verify_case: Any = None
    bench_case: Any = None

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


def ordered(candidates: Iterable[Optimization]) -> list[Optimization]:
    """Candidates on one target, outermost first: higher `priority` first, ties by name."""
    return sorted(candidates, key=lambda opt: (-opt.priority, opt.name))


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
