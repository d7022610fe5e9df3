"""``python -m freqtrade_opt_plugin.offline ARGS``: the ``freqtrade`` command, offline.

Installs the static markets fixture and the network guard, then runs ``freqtrade.main.main(ARGS)``.
Exits with Freqtrade's exit code, or 3 if Freqtrade succeeded although a network access had to be
blocked (which means something was not covered by the fixture).
Set ``FREQTRADE_OFFLINE_MARKETS`` to a fixture path to use another one than the bundled
``markets.json``.
"""

from __future__ import annotations

import os
import sys

from freqtrade_opt_plugin.offline.markets import MARKETS_ENV, install_static_markets
from freqtrade_opt_plugin.offline.netguard import blocked_attempts, install_network_guard


NETWORK_BLOCKED_EXIT_CODE = 3


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    install_network_guard()
    install_static_markets(os.environ.get(MARKETS_ENV) or None)
    from freqtrade.main import main as freqtrade_main

    try:
        freqtrade_main(args)
        code: int | str | None = 0
    except SystemExit as exc:  # freqtrade.main.main always ends with sys.exit
        code = exc.code
    attempts = blocked_attempts()
    if attempts:
        print(
            f"freqtrade_opt_plugin.offline: {len(attempts)} network access attempt(s) blocked, "
            f"first: {attempts[0]}",
            file=sys.stderr,
        )
        if not code:
            return NETWORK_BLOCKED_EXIT_CODE
    if isinstance(code, str):
        print(code, file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
