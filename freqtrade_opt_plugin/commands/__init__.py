"""The ``freqtrade-opt`` sub-commands: one module per command, each with ``register(subparsers)``.

`cli.build_parser` walks this package (`command_modules`); a new command is a new module here.
A command's module imports its heavy parts (rich, Freqtrade, the analysis) inside its handler, so
``freqtrade-opt --help`` stays fast.
"""

from __future__ import annotations

import pkgutil


def command_modules() -> list[str]:
    """The dotted names of the command modules, in name order (``_helper`` modules, which
    commands share, are not commands)."""
    return sorted(
        f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    )
