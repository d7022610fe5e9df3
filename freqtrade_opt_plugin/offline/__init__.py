"""Run the real Freqtrade CLI offline: static markets, generated data, throwaway workspaces.

``python -m freqtrade_opt_plugin.offline <freqtrade arguments>`` is a drop-in for the
``freqtrade`` command that loads exchange markets from ``markets.json`` and blocks the network.
"""

from __future__ import annotations

import os

from freqtrade_opt_plugin.offline.markets import (
    FIXTURE_PATH,
    MARKETS_ENV,
    install_static_markets,
    static_markets,
    uninstall_static_markets,
)


__all__ = [
    "FIXTURE_PATH",
    "MARKETS_ENV",
    "install_from_env",
    "install_static_markets",
    "static_markets",
    "uninstall_static_markets",
]


def install_from_env() -> bool:
    """Repeat the offline setup in a child process if its parent was an offline run.

    Returns True when ``FREQTRADE_OFFLINE_MARKETS`` was set (static markets and the network
    guard are then installed here too). Not needed by hyperopt workers, which never load markets.
    """
    path = os.environ.get(MARKETS_ENV)
    if not path:
        return False
    from freqtrade_opt_plugin.offline.netguard import install_network_guard

    install_static_markets(path)
    install_network_guard()
    return True
