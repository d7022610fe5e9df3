"""``freqtrade-opt cache status`` and ``freqtrade-opt cache clear [NAME]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from freqtrade_opt_plugin.cache.settings import CACHE_NAMES


def _configure(args: argparse.Namespace) -> None:
    from freqtrade_opt_plugin.cache.caches import configure

    config = getattr(args, "config", None)
    if not config:
        configure()
        return
    from freqtrade.configuration.load_config import load_config_file

    from freqtrade_opt_plugin.paths import remember_user_data_dir

    loaded = load_config_file(config)
    if loaded.get("user_data_dir"):
        remember_user_data_dir(loaded["user_data_dir"])
    section = loaded.get("freqtrade_opt") or {}
    configure(section.get("cache") if isinstance(section, dict) else None)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ttl(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def cmd_cache_status(args: argparse.Namespace) -> int:
    from freqtrade_opt_plugin.cache.caches import cache_root, get_cache_status

    _configure(args)
    status = get_cache_status()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print_status(status, str(cache_root()))
    return 0


def print_status(status: dict[str, Any], root: str) -> None:
    """Render `get_cache_status()` as a rich table, recommendations below."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(
        "cache", "entries", "size MB", "limit MB", "TTL", "hits", "misses", "hit rate",
        "evictions", "state", title=f"freqtrade-opt caches ({root})",
    )
    for name, s in status["caches"].items():
        if not s["enabled"]:
            state = "[yellow]disabled[/]"
        elif s["bypassed"]:
            state = "[red]bypassed[/]"
        else:
            state = "[green]ok[/]"
        table.add_row(
            name, str(s["entries"]), f"{s['size_mb']:.1f}", f"{s['limit_mb']:.0f}",
            _ttl(s["ttl_seconds"]), str(s["hits"]), str(s["misses"]), _rate(s["hit_rate"]),
            str(s["evictions"]), state,
        )
    console.print(table)
    agg = status["aggregate"]
    console.print(
        f"total {agg['total_memory_mb']:.1f} MB in {agg['entries']} entries · average hit rate "
        f"{_rate(agg['average_hit_rate'])}"
    )
    if status.get("redis"):
        _print_shared(console, status)
    for name, s in status["caches"].items():
        if s["bypassed"]:
            console.print(f"[red]{name}:[/] {s['bypassed']}")
    for name, s in status["caches"].items():
        for refusal in s.get("refusals", []):
            console.print(f"[yellow]{name}: not stored[/] ({refusal['count']}x): "
                          f"{refusal['reason']}")
    for rec in status["recommendations"]:
        setting = f" ({rec['setting']}={rec['suggested']})" if rec.get("suggested") else ""
        console.print(f"[yellow]recommendation:[/] {rec['message']}{setting}")


def _num(value: Any, fmt: str = "") -> str:
    return "-" if value is None else format(value, fmt)


def _print_shared(console: Any, status: dict[str, Any]) -> None:
    """The shared tier: the server (state, round trip, memory bound) and per-cache figures."""
    from rich.table import Table

    server = status["redis"]
    color = {"ok": "green", "unavailable": "red", "refused": "red"}.get(server["state"], "yellow")
    access = " · read-only user" if server["read_only"] else ""
    table = Table(
        "cache", "entries", "size MB", "local hits", "redis hits", "misses", "stores",
        "refused", "skipped", "latency ms",
        title=f"shared tier: Redis {server['url']} (namespace {server['namespace']}) "
              f"[{color}]{server['state']}[/]{access}",
    )
    for name, s in status["caches"].items():
        shared = s.get("redis")
        if shared is None:
            table.add_row(name, "[dim]not shared[/]", *[""] * 8)
            continue
        entries = _num(shared["entries"]) + ("+" if shared["partial"] else "")
        table.add_row(
            name, entries, _num(shared["size_mb"], ".1f"), str(s["local_hits"]),
            str(shared["hits"]), str(shared["misses"]), str(shared["stores"]),
            str(shared["refused"]), str(shared["skipped"]),
            _num(shared["mean_latency_ms"], ".2f"),
        )
    console.print(table)
    memory = (f"server memory {_num(server['used_memory_mb'], '.1f')} MB of maxmemory "
              f"{_num(server['maxmemory_mb'], '.0f')} MB ({server['maxmemory_policy'] or '-'}) "
              f"· ping {_num(server['ping_ms'], '.2f')} ms")
    console.print(memory)
    if server["problem"]:
        console.print(f"[red]redis:[/] {server['problem']}")


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from freqtrade_opt_plugin.cache.caches import clear_cache, get_cache

    _configure(args)
    names = CACHE_NAMES if args.name is None else (args.name,)
    removed = clear_cache(args.name)
    for name in names:
        cache = get_cache(name)
        state = f" (still unusable: {cache.bypassed})" if cache.bypassed else ""
        print(f"cleared cache '{name}' at {cache.directory}: {removed[name]} entries removed"
              f"{state}")
    return 1 if any(get_cache(n).bypassed for n in names) else 0


def register(subparsers: Any) -> None:
    """Add ``cache status`` and ``cache clear [NAME]`` to the ``freqtrade-opt`` command."""
    cache = subparsers.add_parser("cache", help="the plugin's result caches")
    sub = cache.add_subparsers(dest="cache_command", metavar="ACTION")

    def _no_action(args: argparse.Namespace) -> int:
        cache.print_help()
        return 0

    cache.set_defaults(func=_no_action)
    status = sub.add_parser("status", help="entries, size, hit rate and advice per cache")
    status.add_argument("-c", "--config", help="a Freqtrade config (its user_data_dir and "
                                               "freqtrade_opt.cache section apply)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_cache_status)
    clear = sub.add_parser("clear", help="remove all entries of one cache (default: all)")
    clear.add_argument("name", nargs="?", choices=CACHE_NAMES, help="cache to clear")
    clear.add_argument("-c", "--config", help="a Freqtrade config (its user_data_dir and "
                                              "freqtrade_opt.cache section apply)")
    clear.set_defaults(func=cmd_cache_clear)
