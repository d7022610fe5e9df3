"""Whether this interpreter runs a Freqtrade command line, and which subcommand (for the
process-wide optimizations `startup_gc` and `exit_gc`, decided from ``sys.orig_argv``)."""

from __future__ import annotations

from pathlib import Path


#: ``python -m <module>`` runs that are Freqtrade command lines.
COMMAND_MODULES = frozenset({"freqtrade", "freqtrade.__main__", "freqtrade_opt_plugin.offline"})
_VALUED_OPTIONS = ("-X", "-W")  # interpreter options with a separate value


def freqtrade_arguments(orig_argv: list[str]) -> list[str] | None:
    """Freqtrade's own arguments if the interpreter was started as a Freqtrade command line (the
    ``freqtrade`` script, ``python -m freqtrade``, the offline runner), else None."""
    args = iter(orig_argv[1:])
    for arg in args:
        if arg in _VALUED_OPTIONS:
            next(args, None)
        elif arg == "-m":
            return list(args) if next(args, None) in COMMAND_MODULES else None
        elif arg == "-c" or arg == "-" or not arg.startswith("-"):
            return list(args) if Path(arg).name in ("freqtrade", "freqtrade.exe") else None
    return None


def subcommand(orig_argv: list[str]) -> str | None:
    """The Freqtrade subcommand (``backtesting``, ``hyperopt``, ...) of a Freqtrade command line:
    its first argument that is not an option (Freqtrade takes only ``-h``/``-V`` before it)."""
    arguments = freqtrade_arguments(orig_argv)
    return next((arg for arg in arguments or () if not arg.startswith("-")), None)
