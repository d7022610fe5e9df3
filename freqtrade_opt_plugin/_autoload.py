"""Start-up hook: watches Freqtrade's imports and activates the plugin when a target appears.

Loaded by ``freqtrade_opt_plugin.pth`` (and ``.start``, PEP 829) at interpreter start. It imports
nothing beyond ``os`` and ``sys``: the plugin machinery loads only when a trigger module finishes
importing. ``FREQTRADE_OPT_AUTOLOAD=0`` turns it off.
"""

import os
import sys


TRIGGERS = frozenset(
    {
        "freqtrade.data.btanalysis",
        "freqtrade.optimize.backtesting",
        "freqtrade.optimize.hyperopt",
        "freqtrade.plot.plotting",
    }
)
_OFF = ("0", "false", "no", "off")

_started = False  # the start-up optimizations ran (before the first Freqtrade module)
_activated = False  # set once the plugin is active: from then on every freqtrade import is seen
_depth = 0  # Freqtrade modules being executed right now (nested imports)
_finished: list = []  # modules finished within the current outermost Freqtrade import


def autoload_enabled() -> bool:
    return os.environ.get("FREQTRADE_OPT_AUTOLOAD", "1").strip().lower() not in _OFF


def _before_freqtrade() -> None:
    """Once, before the first Freqtrade module is found: start-up optimizations that must act
    before Freqtrade's imports run (`startup_gc`: Freqtrade's collector thresholds;
    `lazy_imports`: scipy.stats loaded on first use; `exit_gc`: its exit handler, registered
    before Freqtrade's so that it runs after them)."""
    global _started
    _started = True
    try:
        from freqtrade_opt_plugin import lazy_imports
        from freqtrade_opt_plugin.optimizations import exit_gc, startup_gc

        startup_gc.install()
        lazy_imports.install()
        exit_gc.install()
    except Exception:  # never break Freqtrade's import
        import logging

        logging.getLogger(__name__).warning("freqtrade-opt: start-up optimizations failed",
                                            exc_info=True)


def _after_imports(modules: list) -> None:
    """Called once the outermost Freqtrade import completed: no module is half-initialised."""
    if not (_activated or any(m.__name__ in TRIGGERS for m in modules)):
        return
    try:
        from freqtrade_opt_plugin import activation

        activation.modules_imported(modules)
    except Exception:  # never break Freqtrade's import
        import logging

        logging.getLogger(__name__).warning(
            "freqtrade-opt: activation failed after importing %s", modules[-1].__name__,
            exc_info=True,
        )


def _exec_and_notify(exec_module, module) -> None:
    global _depth
    _depth += 1
    try:
        exec_module(module)
    finally:
        _depth -= 1
    _finished.append(module)
    if _depth == 0:
        modules = _finished[:]
        _finished.clear()
        _after_imports(modules)



def spec_from_others(me: object, busy: set[str], fullname: str, path: object,
                     target: object) -> object:
    """The spec the other meta-path finders give for `fullname` (None: none), asked with `me`
    skipped and `fullname` in `busy` meanwhile (so `me` passes on nested lookups of it)."""
    busy.add(fullname)
    try:
        for finder in sys.meta_path:
            if finder is me or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None
    finally:
        busy.discard(fullname)

class _FreqtradeImportWatcher:
    """A meta-path finder that only decorates Freqtrade's module specs with an after-exec hook."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("freqtrade.") or fullname in self._busy:
            return None
        if not _started:
            _before_freqtrade()
        spec = spec_from_others(self, self._busy, fullname, path, target)
        if spec is None:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        # Loaders from the path finder are per-module instances: decorate just this one.
        loader.exec_module = lambda module: _exec_and_notify(exec_module, module)
        return spec


_watcher = None


def install() -> None:
    """Put the import watcher in place (idempotent; no-op when FREQTRADE_OPT_AUTOLOAD is off)."""
    global _watcher
    if _watcher is not None or not autoload_enabled():
        return
    _watcher = _FreqtradeImportWatcher()
    sys.meta_path.insert(0, _watcher)
    # A trigger imported before we were installed (e.g. python -S, then the mixin).
    early = [sys.modules[name] for name in TRIGGERS if name in sys.modules]
    if early and _depth == 0:
        _after_imports(early)


def mark_activated(active: bool) -> None:
    global _activated
    _activated = active
