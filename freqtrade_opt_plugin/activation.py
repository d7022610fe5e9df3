"""Activation: load plugins, check each target's source, install and remove Routers.

`activate()` builds the pluggy plugin manager, collects the registered optimizations and installs
a Router at every target whose module is imported (others follow when their module is imported).
Every place a Freqtrade module bound the original (``from x import f``) is rebound too.
`deactivate()` puts the exact original objects back.
At a target whose candidates are all hot (`hot_router`) the original itself stays bound while none
of them is on, and the Router is bound whenever one is (`_bind_hot`, run on every flag change).
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from freqtrade_opt_plugin import _autoload, hookspecs, monitor, runtime_patches, settings
from freqtrade_opt_plugin.cluster import hyperopt as cluster_hyperopt
from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.paths import remember_user_data_dir
from freqtrade_opt_plugin.registry import Optimization, fingerprint, ordered, verified_versions
from freqtrade_opt_plugin.router import candidates_of, is_router, make_router


logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT
CONFIG_OBSERVER_TARGET = "freqtrade.optimize.backtesting:Backtesting.__init__"


@dataclass
class Patch:
    """One binding we replaced: `owner.attribute` was `original`, is now `replacement`."""

    owner: Any
    attribute: str
    original: Any
    replacement: Any

    def undo(self) -> None:
        if getattr(self.owner, self.attribute, None) is self.replacement:
            setattr(self.owner, self.attribute, self.original)


@dataclass
class TargetState:
    """What happened to one optimization's target in this process."""

    installed: bool = False
    verified: bool | None = None  # None: module not imported yet
    detail: str = "target module not imported yet"
    fingerprint: str | None = None


_PENDING = TargetState()


@dataclass
class Activation:
    plugin_manager: pluggy.PluginManager
    optimizations: dict[str, Optimization]
    flags: Flags
    plugin_errors: dict[str, str] = field(default_factory=dict)
    targets: dict[str, TargetState] = field(default_factory=dict)
    patches: list[Patch] = field(default_factory=list)
    routed: dict[int, Any] = field(default_factory=dict)  # id(original) -> router
    hot: list[tuple[Any, Any]] = field(default_factory=list)  # (router, original), all-hot targets
    reported: set[str] = field(default_factory=set)


_lock = threading.RLock()
_active: Activation | None = None
_stopped = False  # deactivate() was called: imports no longer re-activate


# --- plugins -------------------------------------------------------------------------------------

def build_plugin_manager() -> tuple[pluggy.PluginManager, dict[str, str]]:
    """A plugin manager with every ``freqtrade_opt`` entry point that imports cleanly."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    errors: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # one broken plugin must not break the others, nor Freqtrade
            errors[ep.name] = f"{type(exc).__name__}: {exc}"
            logger.warning("freqtrade-opt: plugin '%s' (%s) failed to load: %s",
                           ep.name, ep.value, errors[ep.name])
    return pm, errors


def collect_optimizations(
    pm: pluggy.PluginManager, errors: dict[str, str]
) -> dict[str, Optimization]:
    """Ask every plugin for its optimizations; a plugin that raises or returns junk is skipped."""
    found: dict[str, Optimization] = {}
    for impl in pm.hook.freqtrade_opt_register_optimizations.get_hookimpls():
        try:
            provided = list(impl.function() or [])
        except Exception as exc:
            errors[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
            logger.warning("freqtrade-opt: plugin '%s' failed to register optimizations: %s",
                           impl.plugin_name, errors[impl.plugin_name])
            continue
        for opt in provided:
            if not isinstance(opt, Optimization):
                logger.warning("freqtrade-opt: plugin '%s' returned %r, not an Optimization; "
                               "skipped", impl.plugin_name, opt)
            elif opt.name in found:
                logger.warning("freqtrade-opt: optimization '%s' from plugin '%s' is already "
                               "registered; skipped", opt.name, impl.plugin_name)
            else:
                found[opt.name] = opt
    return found


# --- settings ------------------------------------------------------------------------------------

def _report_problems(state: Activation, problems: tuple[str, ...]) -> None:
    for problem in problems:
        if problem not in state.reported:
            state.reported.add(problem)
            logger.warning("freqtrade-opt: %s", problem)


def _persisted_disabled() -> dict[str, str]:
    try:
        return dict(monitor.disabled())
    except Exception:
        logger.debug("freqtrade-opt: no persisted auto-disable state", exc_info=True)
        return {}


def _persist_disable(name: str, reason: str) -> None:
    monitor.disable(name, reason)


def learn_config(config: Any) -> None:
    """Apply the ``freqtrade_opt`` section of a Freqtrade config (and hand it to workers)."""
    if not isinstance(config, dict):
        return
    section = config.get(settings.CONFIG_KEY)
    if section is not None:
        settings.export_section(section)
    if config.get("user_data_dir"):
        remember_user_data_dir(config["user_data_dir"])
    if isinstance(section, dict) and "cache" in section:
        from freqtrade_opt_plugin import cache

        cache.configure(section["cache"])
    with _lock:
        if _active is not None:
            new = settings.load_settings(section, _active.optimizations)
            _report_problems(_active, new.problems)
            _active.flags.refresh(new)


# --- patching ------------------------------------------------------------------------------------

def _resolve(target: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute, current value) of ``module:qualname`` if its module is imported."""
    module_name, _, qualname = target.partition(":")
    owner: Any = sys.modules.get(module_name)
    if owner is None:
        return None
    *path, attribute = qualname.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    return owner, attribute, inspect.getattr_static(owner, attribute, None)


def _verify(state: Activation, opt: Optimization, original: Any) -> TargetState:
    try:
        found = fingerprint(original)
    except (OSError, TypeError) as exc:
        return TargetState(verified=False, detail=f"source unavailable ({exc}); not patched")
    shown = verified_versions(opt.fingerprints, found)
    if shown:
        return TargetState(verified=True, fingerprint=found,
                           detail=f"source verified (same as freqtrade {shown})")
    detail = f"source differs from every verified version (fingerprint {found})"
    if state.flags.settings.allow_unverified:
        logger.warning("freqtrade-opt: PATCHING UNVERIFIED '%s': %s, because "
                       "FREQTRADE_OPT_ALLOW_UNVERIFIED is set. Results may differ.",
                       opt.name, detail)
        return TargetState(verified=False, fingerprint=found,
                           detail=detail + "; patched anyway (allow_unverified)")
    return TargetState(verified=False, fingerprint=found, detail=detail + "; not patched")


def _rebind(state: Activation, module: ModuleType) -> None:
    """Point a Freqtrade module's own references to patched originals at their Routers."""
    if not state.routed:
        return
    namespace = vars(module)
    for attribute, value in list(namespace.items()):
        router = state.routed.get(id(value))
        if router is not None and value is not router and value is router.__wrapped__:
            namespace[attribute] = router
            state.patches.append(Patch(module, attribute, value, router))


def _freqtrade_modules() -> list[ModuleType]:
    return [m for n, m in list(sys.modules.items())
            if m is not None and (n == "freqtrade" or n.startswith("freqtrade."))]


def _install(state: Activation, target: str, candidates: list[Optimization]) -> None:
    """Install one Router at `target` holding every candidate whose source check passes."""
    if any(state.targets.get(opt.name, _PENDING).verified is not None for opt in candidates):
        return  # already handled (the candidates of one target are handled together)
    resolved = _resolve(target)
    if resolved is None:
        return
    owner, attribute, original = resolved
    if original is None or not inspect.isfunction(original):
        for opt in candidates:
            state.targets[opt.name] = TargetState(
                verified=False, detail=f"{target} is not a plain function here; not patched")
        return
    if is_router(original):
        for opt in candidates:
            state.targets[opt.name] = TargetState(verified=False,
                                                  detail="already routed elsewhere")
        return
    chosen = []
    for opt in candidates:
        target_state = _verify(state, opt, original)
        state.targets[opt.name] = target_state
        if target_state.verified or state.flags.settings.allow_unverified:
            chosen.append(opt)
        else:
            logger.info("freqtrade-opt: '%s' not patched: %s", opt.name, target_state.detail)
    if not chosen:
        return

    def build_failed(opt: Optimization, exc: Exception) -> None:
        detail = f"its factory raised {type(exc).__name__}: {exc}; not patched"
        logger.warning("freqtrade-opt: '%s' not patched: %s", opt.name, detail)
        state.targets[opt.name] = TargetState(verified=state.targets[opt.name].verified,
                                              fingerprint=state.targets[opt.name].fingerprint,
                                              detail=detail)
        chosen.remove(opt)

    try:
        router = make_router(list(chosen), original, state.flags, monitor.get_monitor(),
                             on_build_error=build_failed)
    except ValueError:
        return  # every factory failed
    setattr(owner, attribute, router)
    state.patches.append(Patch(owner, attribute, original, router))
    state.routed[id(original)] = router
    if all(opt.hot for opt in chosen):
        state.hot.append((router, original))
    for opt in chosen:
        state.targets[opt.name].installed = True
        monitor.get_monitor().watch(opt, on_fail=state.flags.disable)
    if inspect.ismodule(owner):
        for module in _freqtrade_modules():
            if module is not owner:
                _rebind(state, module)
    logger.debug("freqtrade-opt: routed %s through %s", target,
                 ", ".join(f"{opt.name} ({state.targets[opt.name].detail})" for opt in chosen))


def _bind_hot(state: Activation) -> None:
    """At every all-hot target bind its Router if one of its candidates is on, else the original
    (everywhere the Router was installed; a binding somebody else changed is left alone)."""
    decisions = state.flags.decisions
    for router, original in state.hot:
        on = any(decisions[opt.name].active for opt in candidates_of(router)
                 if opt.name in decisions)
        wanted, unwanted = (router, original) if on else (original, router)
        for patch in state.patches:
            if patch.replacement is router and inspect.getattr_static(
                patch.owner, patch.attribute, None
            ) is unwanted:
                setattr(patch.owner, patch.attribute, wanted)


def _flags_changed(state: Activation) -> None:
    with _lock:
        if _active is state:
            _bind_hot(state)


def _observe_config(state: Activation) -> None:
    """Wrap Backtesting.__init__ so the user's config section reaches the settings."""
    if any(p.attribute == "__init__" for p in state.patches):
        return
    resolved = _resolve(CONFIG_OBSERVER_TARGET)
    if resolved is None or not inspect.isfunction(resolved[2]):
        return
    owner, attribute, original = resolved

    def __init__(self, config, *args, **kwargs):
        learn_config(config)
        monitor.get_monitor().start_run()  # hyperopt workers join this run
        return original(self, config, *args, **kwargs)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    __init__.__doc__ = original.__doc__
    setattr(owner, attribute, __init__)
    state.patches.append(Patch(owner, attribute, original, __init__))


def by_target(optimizations: Iterable[Optimization]) -> dict[str, list[Optimization]]:
    """Optimizations grouped by target, each group outermost first (see `registry.ordered`)."""
    groups: dict[str, list[Optimization]] = {}
    for opt in optimizations:
        groups.setdefault(opt.target, []).append(opt)
    return {target: ordered(group) for target, group in groups.items()}


def _install_all(state: Activation) -> None:
    for target, candidates in by_target(state.optimizations.values()).items():
        _install(state, target, candidates)
    _bind_hot(state)
    _observe_config(state)
    cluster_hyperopt.install(state)  # Hyperopt.start: epochs on a Dask cluster when configured


def _monitor_status() -> dict[str, Any]:
    state = _active
    if state is None:
        return {}
    return {
        "level": state.flags.settings.level.name.lower(),
        "active": sorted(name for name, target in state.targets.items()
                         if target.installed and state.flags.decisions[name].active),
    }


# --- public --------------------------------------------------------------------------------------

def activate() -> Activation | None:
    """Activate the plugin in this process (idempotent). None when FREQTRADE_OPT_AUTOLOAD is off."""
    global _active, _stopped
    if not _autoload.autoload_enabled():
        logger.info("freqtrade-opt: FREQTRADE_OPT_AUTOLOAD is off; nothing is patched")
        return None
    with _lock:
        _stopped = False
        if _active is None:
            pm, errors = build_plugin_manager()
            optimizations = collect_optimizations(pm, errors)
            plugin_settings = settings.load_settings(settings.section_from_environment(),
                                                     optimizations)
            flags = Flags(optimizations.values(), plugin_settings, _persisted_disabled(),
                          on_disable=_persist_disable)
            _active = Activation(pm, optimizations, flags, plugin_errors=errors)
            flags.subscribe(functools.partial(_flags_changed, _active))
            monitor.get_monitor().set_status_provider(_monitor_status)
            monitor.get_monitor().set_plugin_manager(pm)
            _report_problems(_active, plugin_settings.problems)
            _autoload.install()
            _autoload.mark_activated(True)
        _install_all(_active)
        return _active


def modules_imported(modules: list[ModuleType]) -> None:
    """Called by the import watcher once a (nested) Freqtrade import has completed."""
    with _lock:
        if _stopped:
            return
        state = _active if _active is not None else activate()
        if state is None:
            return
        _install_all(state)
        for module in modules:
            _rebind(state, module)
        _bind_hot(state)
        runtime_patches.remember(_freqtrade_modules())  # as imported, with our Routers


def deactivate() -> None:
    """Remove every Router and observer; the exact original objects are back in place."""
    global _active, _stopped
    with _lock:
        _stopped = True
        if _active is None:
            return
        for patch in reversed(_active.patches):
            patch.undo()
        for name in _active.optimizations:
            monitor.get_monitor().unwatch(name)
        _active = None
        monitor.get_monitor().set_plugin_manager(None)
        _autoload.mark_activated(False)


def current() -> Activation | None:
    """The activation of this process, if any."""
    return _active


def plugin_manager() -> pluggy.PluginManager | None:
    return _active.plugin_manager if _active is not None else None
