"""What is active in this environment, and why: the data behind ``freqtrade-opt status``."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import platform
from typing import Any

from freqtrade_opt_plugin import __version__, _autoload, activation
from freqtrade_opt_plugin.settings import GlobalSettings


logger = logging.getLogger(__name__)


def _freqtrade_version() -> str:
    try:
        return importlib.metadata.version("freqtrade")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _details(opt: Any) -> dict[str, Any] | None:
    """An optimization's own state (``describe()`` of its module, e.g. fast_loop's guard)."""
    built_by = opt.factory if opt.factory is not None else opt.replacement
    module = importlib.import_module(built_by.__module__)
    describe = getattr(module, "describe", None)
    if describe is None:
        return None
    try:
        return describe()
    except Exception as exc:  # noqa: BLE001 - status must render whatever a module does
        return {"error": f"{type(exc).__name__}: {exc}"}


def collect_status(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Activate (as a backtest would), import every target module and report each optimization.

    `config` is a loaded Freqtrade config; its ``freqtrade_opt`` section is applied.
    """
    state = activation.activate()
    if state is None:
        pm, errors = activation.build_plugin_manager()
        optimizations = activation.collect_optimizations(pm, errors)
    else:
        optimizations, errors = state.optimizations, state.plugin_errors
        for opt in optimizations.values():
            try:
                importlib.import_module(opt.module)
            except Exception as exc:
                logger.debug("cannot import %s: %s", opt.module, exc)
        activation.modules_imported([])  # install targets imported just now
        if config is not None:
            activation.learn_config(config)

    rows = []
    for opt in optimizations.values():
        row: dict[str, Any] = {
            "name": opt.name,
            "target": opt.target,
            "tier": opt.tier.name.lower(),
            "priority": opt.priority,
            "switch": opt.env_name,
            "description": opt.description,
        }
        if state is None:
            row.update(verified=None, installed=False, active=False, percentage=0,
                       reason="FREQTRADE_OPT_AUTOLOAD is off: nothing is patched",
                       verification="not checked")
        else:
            target = state.targets.get(opt.name, activation.TargetState())
            decision = state.flags.decisions[opt.name]
            active = target.installed and decision.active
            reason = decision.reason if target.installed else f"not patched: {target.detail}"
            row.update(verified=target.verified, installed=target.installed, active=active,
                       percentage=decision.percentage if target.installed else 0,
                       reason=reason, verification=target.detail,
                       errors=state.flags.errors.get(opt.name, 0))
        if (details := _details(opt)) is not None:
            row["details"] = details
        rows.append(row)

    settings = state.flags.settings if state is not None else None
    return {
        "freqtrade_version": _freqtrade_version(),
        "plugin_version": __version__,
        "python": platform.python_version(),
        "autoload": _autoload.autoload_enabled(),
        "level": settings.level.name.lower() if settings else "n/a",
        "settings": {
            name: {"value": getattr(settings, name) if settings else None,
                   "source": settings.sources.get(name, "default") if settings else "n/a"}
            for name in GlobalSettings.model_fields
        },
        "problems": list(settings.problems) if settings else [],
        "plugin_errors": dict(errors),
        "optimizations": rows,
    }
