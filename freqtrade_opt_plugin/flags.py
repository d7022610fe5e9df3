"""Feature flags: which path each call of an optimization takes, and why."""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel
from freqtrade_opt_plugin.settings import Settings


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """The standing decision for one optimization: its rollout percentage and the reason."""

    percentage: int  # share of calls on the optimized path: 0 = never, 100 = always
    reason: str

    @property
    def active(self) -> bool:
        return self.percentage > 0


def bucket(seed: int, name: str, call: int) -> int:
    """Deterministic bucket 1..100 of one call (Unleash-style: raising a percentage only adds)."""
    return zlib.crc32(f"{seed}:{name}:{call}".encode()) % 100 + 1


def evaluate(opt: Optimization, settings: Settings, disabled_reason: str | None) -> Decision:
    """Decide from settings and auto-disable state whether `opt` runs, at what share, and why."""
    if disabled_reason:
        return Decision(0, f"auto-disabled: {disabled_reason}")
    if opt.name in settings.invalid:
        return Decision(0, f"invalid setting: {settings.invalid[opt.name]}")
    flag = settings.enabled.get(opt.name)
    source = settings.sources.get(f"{opt.name}.enabled", "default")
    if flag is False:
        return Decision(0, f"flag off ({source})")
    percentage = settings.percentage.get(opt.name, opt.default_percentage)
    if flag is True:
        reason = f"flag on ({source})"
    elif settings.level >= opt.tier:
        reason = f"level {settings.level.name.lower()} >= tier {opt.tier.name.lower()}"
    else:
        tier = opt.tier.name.lower()
        return Decision(0, f"level {settings.level.name.lower()} < tier {tier}")
    if percentage == 0:
        return Decision(0, "rollout 0%")
    if percentage < 100:
        reason += f", rollout {percentage}%"
    return Decision(percentage, reason)


class Flags:
    """Per-process flag state: standing decisions, error counts and auto-disables.

    `on_disable(name, reason)` is called when an optimization switches itself off (the monitor
    persists it so later runs and other processes see it).
    """

    def __init__(
        self,
        optimizations: Iterable[Optimization],
        settings: Settings,
        disabled: dict[str, str] | None = None,
        on_disable: Callable[[str, str], None] | None = None,
    ) -> None:
        self.optimizations = {opt.name: opt for opt in optimizations}
        self.settings = settings
        self.disabled: dict[str, str] = dict(disabled or {})
        self.errors: dict[str, int] = dict.fromkeys(self.optimizations, 0)
        self._on_disable = on_disable
        self._calls = itertools.count()
        self.decisions: dict[str, Decision] = {}
        self._listeners: list[Callable[[], None]] = []
        self.refresh()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every change of the standing decisions (`refresh`, `disable`).

        Used by what precomputes decisions (hot Routers, the hot-target bindings); a listener
        that raises is logged and skipped.
        """
        self._listeners.append(listener)

    def refresh(self, settings: Settings | None = None) -> None:
        """Recompute standing decisions (after new settings or an auto-disable)."""
        if settings is not None:
            self.settings = settings
        self.decisions = {
            name: evaluate(opt, self.settings, self.disabled.get(name))
            for name, opt in self.optimizations.items()
        }
        for listener in list(getattr(self, "_listeners", ())):
            try:
                listener()
            except Exception:
                logger.warning("freqtrade-opt: a flag listener failed", exc_info=True)

    def use_optimized(self, name: str) -> bool:
        """The per-call decision: a few hundred nanoseconds."""
        decision = self.decisions.get(name)
        if decision is None or decision.percentage <= 0:
            return False
        if decision.percentage >= 100:
            return True
        return bucket(self.settings.seed, name, next(self._calls)) <= decision.percentage

    def use_shadow(self, name: str) -> bool:
        """At level experimental: whether this call runs both paths and compares them."""
        settings = self.settings
        if settings.level < OptimizationLevel.EXPERIMENTAL or settings.shadow_percentage <= 0:
            return False
        opt = self.optimizations.get(name)
        if opt is None or not opt.shadow or not self.decisions[name].active:
            return False
        return bucket(settings.seed + 1, name, next(self._calls)) <= settings.shadow_percentage

    def record_error(self, name: str, exc: BaseException) -> None:
        """Count an error of the optimized path; switch it off at the threshold."""
        self.errors[name] = count = self.errors.get(name, 0) + 1
        if count == 1:
            logger.warning(
                "freqtrade-opt: optimization '%s' failed (%s: %s); the original's result is used",
                name, type(exc).__name__, exc, exc_info=exc,
            )
        if count >= self.settings.error_threshold:
            self.disable(name, f"{count} errors (threshold {self.settings.error_threshold}), "
                               f"last: {type(exc).__name__}: {exc}")

    def disable(self, name: str, reason: str) -> None:
        """Switch `name` off for this process (and, through `on_disable`, persistently)."""
        if name in self.disabled:
            return
        self.disabled[name] = reason
        logger.warning("freqtrade-opt: optimization '%s' disabled: %s", name, reason)
        self.refresh()
        if self._on_disable is not None:
            try:
                self._on_disable(name, reason)
            except Exception:  # persistence is best effort; the process state is what counts
                logger.warning("freqtrade-opt: could not persist the disable of '%s'", name,
                               exc_info=True)

    def level(self) -> OptimizationLevel:
        return self.settings.level
