"""``freqtrade-opt status``: what is active in this environment, and why."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import logging
import platform
import sys
from typing import Any

from freqtrade_opt_plugin import __version__, _autoload, activation
from freqtrade_opt_plugin.cluster.status import cluster_status
from freqtrade_opt_plugin.settings import GlobalSettings


logger = logging.getLogger(__name__)


def _freqtrade_version() -> str:
    try:
        return importlib.metadata.version("freqtrade")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _details(opt: Any) -> dict[str, Any] | None:
    """An optimization's own state (``describe()`` of its module, e.g. fast_loop's guard)."""
    module = importlib.import_module((opt.factory or opt.replacement).__module__)
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
        "cluster": cluster_status(config),
    }


def _load_config(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from freqtrade.configuration.load_config import load_config_file

    return load_config_file(path)


def _yes_no(value: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[value]


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    status = collect_status(_load_config(args.config))
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(
        f"freqtrade {status['freqtrade_version']} · freqtrade-opt-plugin "
        f"{status['plugin_version']} · Python {status['python']} · autoload "
        f"{'on' if status['autoload'] else '[red]off (FREQTRADE_OPT_AUTOLOAD)[/]'}"
    )
    settings = Table("setting", "value", "source", title="Settings")
    for name, item in status["settings"].items():
        value = item["value"]
        settings.add_row(name, getattr(value, "name", str(value)).lower(), item["source"])
    console.print(settings)
    table = Table("optimization", "tier", "verified", "active", "rollout", "errors", "why",
                  title="Optimizations")
    for row in status["optimizations"]:
        table.add_row(row["name"], row["tier"], _yes_no(row["verified"]), _yes_no(row["active"]),
                      f"{row['percentage']}%", str(row.get("errors", 0)), row["reason"])
    console.print(table)
    for row in status["optimizations"]:
        for key, value in (row.get("details") or {}).items():
            console.print(f"{row['name']} {key}: {value}")
    for problem in status["problems"]:
        console.print(f"[yellow]setting problem:[/] {problem}")
    for plugin, error in status["plugin_errors"].items():
        console.print(f"[red]plugin '{plugin}' failed:[/] {error}")
    from freqtrade_opt_plugin.cluster.status import print_cluster

    print_cluster(console, status.get("cluster", {}))
    return 0


def register(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="what is active, and why")
    status.add_argument("-c", "--config", help="a Freqtrade config whose freqtrade_opt section "
                                               "applies")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
