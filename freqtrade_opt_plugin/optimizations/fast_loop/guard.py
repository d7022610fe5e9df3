"""Version guard of the fast trade loop: the source of every Freqtrade function it reproduces.

The driver does not only replace ``Backtesting.backtest``: it reproduces what
``time_pair_generator`` and its helpers do on the pair-candles it skips, relies on
``backtest_loop`` doing nothing there, and writes the DataProvider's slice state itself. Each
of those functions is fingerprinted (`registry.fingerprint_source` of its definition, read from
the module's source file so a Router installed on it does not hide a change). Any difference
means an unverified Freqtrade release: the run is handed to Freqtrade's own loop.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import import_module
from typing import Any

from freqtrade_opt_plugin.registry import fingerprint_source


_BT = "freqtrade.optimize.backtesting:Backtesting."

#: Freqtrade 2026.9 fingerprints of every function whose behaviour the driver reproduces or
#: relies on (regenerate with ``python -m freqtrade_opt_plugin.optimizations.fast_loop.guard``).
FINGERPRINTS: Mapping[str, str] = {
    _BT + "backtest": "96e66894d84adb61",
    _BT + "time_pair_generator": "18e06e78c6b2bb0b",
    _BT + "_time_pair_generator_det": "aee5207f11a46897",
    _BT + "_time_generator": "e76669f02662d5ae",
    _BT + "_time_generator_det": "00df3ad71825fc9b",
    _BT + "validate_row": "768c772b85b409cd",
    _BT + "_sync_pair_index": "d138c7c539544ac9",
    _BT + "_capture_wallet": "58d2b3e99bd1211c",
    _BT + "check_for_trade_entry": "79ac5105f6c83b20",
    _BT + "backtest_loop": "ac4adfa496e59a81",
    _BT + "handle_left_open": "3be708a6b0b50990",
    _BT + "check_abort": "dc16c7a0dd8851ba",
    _BT + "_increment_progress": "1ebe405693e48b51",
    _BT + "_set_progress_step": "7dc7d07085c4db32",
    "freqtrade.data.dataprovider:DataProvider._set_dataframe_max_index": "d488cbde2cda80be",
    "freqtrade.data.dataprovider:DataProvider._set_dataframe_max_date": "fa33d3f75014deb4",
    "freqtrade.data.dataprovider:DataProvider.__init__": "b9f2baaa70d8a429",
    "freqtrade.data.dataprovider:DataProvider.clear_cache": "eed25c83e9cbb8d7",
    "freqtrade.strategy.interface:IStrategy.bot_loop_start": "5f0cef8513cb4244",
    "freqtrade.strategy.strategy_wrapper:strategy_safe_wrapper": "a567a2b4020a38b7",
    "freqtrade.wallets:Wallets.get_total": "78703968addea576",
    "freqtrade.persistence.trade_model:LocalTrade.add_bt_trade": "766cd14bde366445",
    "freqtrade.persistence.trade_model:LocalTrade.remove_bt_trade": "577efca6950b2a8b",
    "freqtrade.persistence.trade_model:LocalTrade.close_bt_trade": "e22ff819a24a021e",
    "freqtrade.persistence.trade_model:LocalTrade.reset_trades": "fb0a8cd47a4da631",
    _BT + "reset_backtest": "2eca411657664218",
    _BT + "get_detail_data": "ae6b32144ec506a0",
}


@cache
def _definitions(module_name: str) -> dict[str, str]:
    """Source of every top-level function and class method of a module, by qualname (parsed
    once per process: both guards read the same modules)."""
    try:
        source = inspect.getsource(import_module(module_name))
    except (ImportError, OSError, TypeError):
        return {}
    lines = source.splitlines(keepends=True)
    found: dict[str, str] = {}

    def add(node: ast.AST, qualname: str) -> None:
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        found[qualname] = "".join(lines[first - 1:node.end_lineno])

    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            add(node, node.name)
        elif isinstance(node, ast.ClassDef):
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    add(child, f"{node.name}.{child.name}")
    return found


def live_fingerprints(targets: Iterable[str] = FINGERPRINTS) -> dict[str, str | None]:
    """Fingerprint of each target in the installed source (None: not found); one parse per
    module."""
    modules: dict[str, dict[str, str]] = {}
    result: dict[str, str | None] = {}
    for target in targets:
        module_name, _, qualname = target.partition(":")
        if module_name not in modules:
            modules[module_name] = _definitions(module_name)
        definition = modules[module_name].get(qualname)
        result[target] = None if definition is None else fingerprint_source(definition)
    return result


def mismatches_of(fingerprints: Mapping[str, str]) -> tuple[str, ...]:
    """Targets whose installed source differs from the verified fingerprint."""
    live = live_fingerprints(fingerprints)
    return tuple(t for t, fp in fingerprints.items() if live[t] != fp)


@cache
def mismatches() -> tuple[str, ...]:
    """Targets of `FINGERPRINTS` whose installed source differs (empty: guard passes)."""
    return mismatches_of(FINGERPRINTS)


def _is_freqtrades_own(obj: object, module_name: str, qualname: str) -> bool:
    """`obj` (a class attribute, possibly behind Routers) is the function Freqtrade defines."""
    if isinstance(obj, property):
        obj = obj.fget
    func = inspect.unwrap(getattr(obj, "__func__", obj))  # classmethod/staticmethod, Routers
    code = getattr(func, "__code__", None)
    module = import_module(module_name)
    return (code is not None and getattr(func, "__qualname__", None) == qualname
            and code.co_filename == getattr(module, "__file__", None))


def replaced(targets: Iterable[str] = FINGERPRINTS) -> tuple[str, ...]:
    """Guarded targets whose live binding is not Freqtrade's own function (e.g. a test's
    ``mocker.patch`` of ``Backtesting.validate_row``): checked on every run, since such patches
    come and go within one process."""
    found = []
    for target in targets:
        module_name, _, qualname = target.partition(":")
        owner: Any = import_module(module_name)
        *path, name = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        if path and name.startswith("__") and not name.endswith("__"):
            name = f"_{owner.__name__}{name}"  # a private method, name-mangled
        live = (inspect.getattr_static(owner, name, None) if path
                else getattr(owner, name, None))
        if not _is_freqtrades_own(live, module_name, qualname):
            found.append(target)
    return tuple(found)


def _print_table() -> None:  # pragma: no cover - maintenance helper
    for target, found in live_fingerprints().items():
        print(f'    "{target}": "{found}",')


if __name__ == "__main__":  # pragma: no cover
    _print_table()
