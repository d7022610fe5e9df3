"""Start-up: modules Freqtrade imports eagerly but rarely uses, loaded on first use instead.

`freqtrade.data.metrics` runs ``from scipy import stats`` (~0.5 s of imports) for one call per
report (`calculate_p_value`, which the ``p_value`` optimization computes without scipy.stats).
When that optimization is on, `install` (called by the start-up hook before the first Freqtrade
module is imported) puts a meta-path finder in front of the others: an import of ``scipy.stats``
then creates the real module object and defers running its code until an attribute of it is
first read or deleted (or ``dir()`` is called on it), like `importlib.util.LazyLoader` (what is
set before is set again after it ran), but letting the import system's own reads
(``__spec__``, ``__path__``, ``__name__``, ...) pass.
The module object stays the same one, so ``from scipy import stats``, ``import scipy.stats``,
``from scipy.stats import norm`` and ``scipy.stats.x`` all give the real module; importing one of
its submodules (``scipy.stats.distributions``) loads it first, as an eager import would.

The decision is made from the environment only (the Freqtrade config is read after the imports):
``FREQTRADE_OPT_<NAME>`` / ``_PERCENTAGE`` over ``FREQTRADE_OPT_LEVEL`` over the config section a
parent process handed down (``_FREQTRADE_OPT_CONFIG``). Off -> nothing is installed. A level set
only in the config file still turns the optimization on (its computation needs no scipy.stats),
just without this start-up gain. Deferring is transparent: whoever uses the module loads it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import types
from dataclasses import dataclass
from importlib.machinery import ModuleSpec, SourceFileLoader, SourcelessFileLoader

from freqtrade_opt_plugin.registry import OptimizationLevel


#: The optimization whose switch governs the deferred import, and its tier.
NAME = "p_value"
TIER = OptimizationLevel.STANDARD
#: Modules deferred, with the scipy versions the ``p_value`` computation was verified against.
LAZY_MODULES = ("scipy.stats",)
VERIFIED_SCIPY = frozenset({"1.17.1"})

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})  # pydantic's bool strings
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
# Read without loading the module: set by the import system or by `_Deferred.exec_module`.
_PASSTHROUGH = frozenset({
    "__spec__", "__name__", "__path__", "__loader__", "__package__", "__file__", "__cached__",
    "__class__", "__dict__",
})


@dataclass
class _Pending:
    module: types.ModuleType
    loader: object  # the real loader
    initial: dict  # the module's attributes when deferred
    loading: bool = False


_lock = threading.RLock()
_pending: dict[str, _Pending] = {}
_finder: _LazyFinder | None = None
decision: str = "not decided (no Freqtrade module imported yet)"


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _config_section() -> dict:
    try:
        section = json.loads(os.environ.get("_FREQTRADE_OPT_CONFIG") or "null")
    except ValueError:
        return {}
    return section if isinstance(section, dict) else {}


def enabled_by_environment(environ: os._Environ | dict | None = None, name: str = NAME,
                           tier: OptimizationLevel = TIER) -> tuple[bool, str]:
    """Whether optimization `name` (of `tier`; default ``p_value``) is on as far as the
    environment tells, and why (see module doc).

    Invalid values count as off (the settings loader reports them later)."""
    env = os.environ if environ is None else environ
    section = _config_section() if environ is None else {}
    override = (section.get("optimizations") or {}).get(name)
    override = override if isinstance(override, dict) else {}
    var = "FREQTRADE_OPT_" + name.upper()
    percentage = env.get(var + "_PERCENTAGE", override.get("percentage"))
    if percentage is not None and str(percentage).strip().lstrip("+").isdigit() \
            and int(str(percentage).strip()) == 0:
        return False, f"rollout 0% ({var}_PERCENTAGE)"
    raw = env.get(var, override.get("enabled"))
    if raw is not None:
        flag = _bool(raw)
        if flag is None:
            return False, f"{var}={raw!r} is not true or false"
        return flag, f"flag {'on' if flag else 'off'} ({var})"
    raw_level = env.get("FREQTRADE_OPT_LEVEL", section.get("level", "disabled"))
    try:
        level = OptimizationLevel.parse(raw_level)
    except ValueError:
        return False, f"FREQTRADE_OPT_LEVEL={raw_level!r} is not a level"
    relation = ">=" if level >= tier else "<"
    return level >= tier, f"level {level.name.lower()} {relation} tier {tier.name.lower()}"


def scipy_problem() -> str | None:
    """Why the scipy installed is not the verified one, or None (imports only ``scipy``)."""
    try:
        import scipy
    except ImportError as exc:
        return f"scipy cannot be imported ({exc})"
    version = getattr(scipy, "__version__", "unknown")
    if version not in VERIFIED_SCIPY:
        return (f"scipy {version} is not the verified version "
                f"({', '.join(sorted(VERIFIED_SCIPY))})")
    return None


class _LazyModule(types.ModuleType):
    """A module whose code has not run yet: the first attribute access runs it."""

    def __getattribute__(self, name: str):
        if name not in _PASSTHROUGH:
            load(self)
        return types.ModuleType.__getattribute__(self, name)

    def __delattr__(self, name: str) -> None:
        load(self)
        types.ModuleType.__delattr__(self, name)

    def __dir__(self):
        load(self)
        return types.ModuleType.__dir__(self)


def load(module: types.ModuleType, wait: bool = True) -> None:
    """Run a deferred module's code now (no-op for any other module, or when re-entered by the
    thread running it). Other threads wait until it has run, unless `wait` is false (then they
    go on without it)."""
    if type(module) is not _LazyModule:
        return
    name = types.ModuleType.__getattribute__(module, "__name__")
    if not _lock.acquire(blocking=wait):
        return
    try:
        entry = _pending.get(name)
        if entry is None or entry.module is not module or entry.loading:
            return
        entry.loading = True
        namespace = types.ModuleType.__getattribute__(module, "__dict__")
        # Set before it ran (e.g. a submodule by the import system): set again afterwards, as
        # after an eager import (importlib.util.LazyLoader does the same).
        updated = {key: value for key, value in namespace.items()
                   if key not in entry.initial or entry.initial[key] is not value}
        try:
            entry.loader.exec_module(module)  # type: ignore[attr-defined]
            namespace.update(updated)
        except BaseException:
            if sys.modules.get(name) is module:  # as a failed eager import: not importable
                del sys.modules[name]
            raise
        finally:
            del _pending[name]
            object.__setattr__(module, "__class__", types.ModuleType)
    finally:
        _lock.release()


def is_deferred(name: str) -> bool:
    """Whether module `name` is imported but its code has not run yet."""
    return type(sys.modules.get(name)) is _LazyModule


class _Deferred:
    """Loader wrapper: creates the module as the real loader does, runs its code later."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__.loader = self.loader  # as after an eager import
        module.__loader__ = self.loader
        with _lock:
            _pending[module.__name__] = _Pending(module, self.loader, dict(module.__dict__))
        module.__class__ = _LazyModule


class _Existing:
    """Loader handing over a submodule that loading its deferred parent has just imported.

    The import system found the submodule missing before the parent ran; without this it would
    run the submodule's code a second time into a new module object."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set the stand-in spec


class _LazyFinder:
    """Meta-path finder deferring `names`, and loading one of them before its submodules."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = frozenset(names)
        self._busy: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        parent = fullname.rpartition(".")[0]
        if parent in self.names:
            return self._submodule_spec(fullname, sys.modules.get(parent))
        if fullname not in self.names or fullname in self._busy:
            return None
        from freqtrade_opt_plugin._autoload import spec_from_others

        spec = spec_from_others(self, self._busy, fullname, path, target)
        if spec is None:
            return None
        if not isinstance(spec.loader, (SourceFileLoader, SourcelessFileLoader)):
            return spec  # e.g. an extension module: its creation runs its code
        spec.loader = _Deferred(spec.loader)
        return spec

    @staticmethod
    def _submodule_spec(fullname: str, parent: types.ModuleType | None):
        """Importing a submodule of a deferred module: load the module first, as an eager import
        of it would have; hand over the submodule if that imported it."""
        if type(parent) is not _LazyModule:
            return None
        # Not waiting for another thread loading it: this thread holds the global import lock
        # here, which that thread's imports need.
        load(parent, wait=False)
        module = sys.modules.get(fullname)
        if module is None or getattr(module, "__spec__", None) is None:
            return None
        del sys.modules[fullname]  # else the import system returns the module's own spec
        return ModuleSpec(fullname, _Existing(module))


def install() -> bool:
    """Defer `LAZY_MODULES` not imported yet when ``p_value`` is on (idempotent).

    Returns whether the finder is in place; the reason is kept in `decision`."""
    global _finder, decision
    if _finder is not None:
        return True
    on, why = enabled_by_environment()
    if on and (problem := scipy_problem()) is not None:
        on, why = False, problem
    names = tuple(name for name in LAZY_MODULES if name not in sys.modules)
    if on and not names:
        on, why = False, "already imported before Freqtrade"
    if not on:
        decision = f"not deferred: {why}"
        return False
    _finder = _LazyFinder(names)
    sys.meta_path.insert(0, _finder)
    decision = f"deferred until first use ({why})"
    return True


def uninstall() -> None:
    """Remove the finder (modules already deferred stay so until used)."""
    global _finder, decision
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    decision = "not deferred: uninstalled"


def describe() -> dict[str, str]:
    """For ``freqtrade-opt status``: whether scipy.stats is deferred in this process."""
    states = []
    for name in LAZY_MODULES:
        if is_deferred(name):
            states.append(f"{name} imported, not loaded yet")
        elif name in sys.modules:
            states.append(f"{name} loaded")
        else:
            states.append(f"{name} not imported")
    return {"start-up": decision, "modules": "; ".join(states)}
