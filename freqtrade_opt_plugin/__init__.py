"""freqtrade-opt-plugin: exact, faster replacements for Freqtrade's backtesting hot spots.

Installed next to Freqtrade it activates itself when Freqtrade's backtesting modules are imported
(see `_autoload`). `activate()` / `deactivate()` do it explicitly. Importing this package is
cheap: the machinery (pluggy, pydantic, pandas) loads on activation only.
"""

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this module loads at interpreter start-up
if TYPE_CHECKING:
    from freqtrade_opt_plugin.activation import Activation

__version__ = "0.1.0"
__all__ = ["__version__", "activate", "deactivate"]


def activate() -> "Activation | None":
    """Patch every verified, registered optimization in this process (idempotent)."""
    from freqtrade_opt_plugin.activation import activate as _activate

    return _activate()


def deactivate() -> None:
    """Put all of Freqtrade's original functions back."""
    from freqtrade_opt_plugin.activation import deactivate as _deactivate

    _deactivate()
