"""The ``freqtrade-opt`` command."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


# Modules that contribute sub-commands through `register_cli(subparsers)`.
COMMAND_MODULES = (
    "freqtrade_opt_plugin.monitor",
    "freqtrade_opt_plugin.cache.commands",
    "freqtrade_opt_plugin.demo",
    "freqtrade_opt_plugin.bench",
    "freqtrade_opt_plugin.microbench",
    "freqtrade_opt_plugin.template",
    "freqtrade_opt_plugin.verify",
)


def _load_config(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from freqtrade.configuration.load_config import load_config_file

    return load_config_file(path)


def _yes_no(value: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[value]


def cmd_status(args: argparse.Namespace) -> int:
    from freqtrade_opt_plugin.status import collect_status

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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freqtrade-opt",
        description="Faster Freqtrade backtests and hyperopts with identical results.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    status = sub.add_parser("status", help="what is active, and why")
    status.add_argument("-c", "--config", help="a Freqtrade config whose freqtrade_opt section "
                                               "applies")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # a command's optional part is missing: the rest still works
            logging.getLogger(__name__).warning("freqtrade-opt: %s unavailable: %s", name, exc)
            continue
        register = getattr(module, "register_cli", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(name)s - %(levelname)s - %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
