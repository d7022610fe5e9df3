"""The hook dispatcher: hands telemetry to the ``freqtrade_opt_*`` hook implementations.

The monitor is given a plugin manager (`HookDispatcher.use`, called by activation) instead of
looking for one: telemetry never triggers the activation machinery (pandas, entry points) itself,
and a test or a tool gives its own manager the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import pluggy


logger = logging.getLogger(__name__)


class HookDispatcher:
    """Calls every implementation of a hook on its own; never raises.

    One implementation that raises is logged once (per hook and plugin) and does not keep the
    others from receiving the data.
    """

    def __init__(self, plugin_manager: pluggy.PluginManager | None = None) -> None:
        self._pm = plugin_manager
        self._failures: set[tuple[str, str]] = set()

    def use(self, plugin_manager: pluggy.PluginManager | None) -> None:
        """Dispatch to `plugin_manager` from now on (None: to nobody)."""
        self._pm = plugin_manager

    @property
    def plugin_manager(self) -> pluggy.PluginManager | None:
        return self._pm

    def __call__(self, hook_name: str, **kwargs: Any) -> None:
        pm = self._pm
        if pm is None:
            return
        try:
            caller = getattr(pm.hook, hook_name, None)
            impls = caller.get_hookimpls() if caller is not None else ()
        except Exception:
            logger.debug("freqtrade-opt: no implementations of %s", hook_name, exc_info=True)
            return
        for impl in reversed(impls):  # pluggy's order: last registered first
            try:
                impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception:
                if (hook_name, impl.plugin_name) not in self._failures:
                    self._failures.add((hook_name, impl.plugin_name))
                    logger.warning(
                        "freqtrade-opt: the %s hook implementation of plugin '%s' failed",
                        hook_name, impl.plugin_name, exc_info=True,
                    )
