"""The plugin's extension contract: pluggy hook specifications of project ``freqtrade_opt``.

A package extends freqtrade-opt by exposing a module (or object) with `hookimpl`-marked functions
under the entry-point group ``freqtrade_opt``; the built-in optimizations register the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy


if TYPE_CHECKING:
    from freqtrade_opt_plugin.registry import Optimization

PROJECT = "freqtrade_opt"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def freqtrade_opt_register_optimizations() -> list[Optimization]:
    """Return the `Optimization` records this plugin provides.

    Called once per process, when the first Freqtrade module with a target is imported. Import
    heavy dependencies inside the implementation, not at module level. A plugin that raises here
    is skipped (logged); the others still load.
    """
