"""Settings: environment > the `freqtrade_opt` section of the Freqtrade config > defaults.

The one settings loader of the plugin. Every settings model is a `SafeSettings` read by
`load_model`: its env prefix over its sub-section of the config section (``freqtrade_opt.<key>``,
the whole section for the global settings) over its defaults. The sub-sections: ``optimizations``
(below), ``monitor`` (`telemetry.settings.MonitorSettings`) and ``cache`` (read by
`freqtrade_opt_plugin.cache`). Parts that keep settings for the life of the process follow the
section (`follow_section`): when Freqtrade's config is learned (`export_section`), they get their
model again.

Global settings are a pydantic-settings model (env prefix ``FREQTRADE_OPT_``). Per-optimization
overrides are read for the registered names: ``FREQTRADE_OPT_<NAME>=true|false`` and
``FREQTRADE_OPT_<NAME>_PERCENTAGE=0..100``, or ``{"optimizations": {"<name>": {"enabled": ...,
"percentage": ...}}}`` in the config section. A bad value never raises: it is logged once with the
variable, the value and what is accepted, and the safe choice (the original function) is taken.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from freqtrade_opt_plugin.registry import OptimizationLevel


logger = logging.getLogger(__name__)

ENV_PREFIX = "FREQTRADE_OPT_"
CONFIG_KEY = "freqtrade_opt"
CONFIG_ENV = "_FREQTRADE_OPT_CONFIG"  # the config section, handed down to worker processes
Source = Literal["default", "config", "env"]

# Prefixes of variables that belong to other parts (besides GlobalSettings' own fields).
RESERVED = ("AUTOLOAD", "STATE_DIR", "MONITOR_", "CACHE_", "DASK_")
#: Keys of the config section that hold another part's settings, not a global setting.
SUBSECTIONS = ("optimizations", "monitor", "cache", "dask")

#: Older switches of one optimization, kept as documented aliases of ``FREQTRADE_OPT_<NAME>``:
#: env variable -> (optimization, key of the config section's ``cache`` object). As before they
#: only switch off: ``false`` (or an invalid value) turns the optimization off, ``true`` leaves it
#: to the level. The new switch wins when both are set. Using one logs a deprecation warning once.
DEPRECATED_SWITCHES: dict[str, tuple[str, str]] = {
    "FREQTRADE_OPT_CACHE_BACKTESTS": ("backtest_cache", "backtests"),
    "FREQTRADE_OPT_CACHE_INDICATORS": ("indicator_cache", "indicators"),
}


_problems: ContextVar[list[str] | None] = ContextVar("_problems", default=None)


class SafeSettings(BaseSettings):
    """A pydantic-settings model whose invalid values are reported and replaced, never raised.

    The environment (``model_config["env_prefix"]``) overrides init kwargs (the config section
    at `config_path`). An invalid value is reported once by `report` with the variable or config
    key, the value, why, and what is accepted; the field's `fallback` is used instead.
    """

    model_config = SettingsConfigDict(extra="ignore")
    config_path: ClassVar[str] = CONFIG_KEY

    @field_validator("*", mode="wrap")
    @classmethod
    def _safe_default(cls, value: Any, handler: ValidatorFunctionWrapHandler, info) -> Any:
        try:
            result = handler(value)
            if isinstance(result, float) and math.isnan(result):  # NaN passes gt/ge checks
                raise ValueError("not a number")
            return result
        except (ValidationError, ValueError) as exc:
            name = info.field_name
            fallback = cls.fallback(name)
            var = cls.model_config.get("env_prefix", "") + name.upper()
            where = f"env {var}" if var in os.environ else f"config '{cls.config_path}.{name}'"
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            accepted = "" if "accepted" in reason else f"; accepted: {cls.accepted(name)}"
            shown = fallback.name.lower() if isinstance(fallback, OptimizationLevel) else fallback
            cls.report(f"{where}={value!r} is invalid ({reason}){accepted}; using {shown!r}")
            return fallback

    @classmethod
    def fallback(cls, name: str) -> Any:
        return cls.model_fields[name].default

    @classmethod
    def accepted(cls, name: str) -> str:
        """What field `name` accepts: its type and bounds, e.g. ``int (ge 1)``."""
        info = cls.model_fields[name]
        limits = [f"{key} {getattr(meta, key)}" for meta in info.metadata
                  for key in ("ge", "gt", "le", "lt") if getattr(meta, key, None) is not None]
        kind = getattr(info.annotation, "__name__", str(info.annotation))
        return kind + (f" ({', '.join(limits)})" if limits else "")

    @classmethod
    def report(cls, message: str) -> None:
        problems = _problems.get()
        if problems is not None:
            problems.append(message)
        elif message not in _reported:
            _reported.add(message)
            logger.warning("freqtrade-opt: %s", message)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # the environment overrides the config section


_reported: set[str] = set()

M = TypeVar("M", bound=SafeSettings)


def load_model(model: type[M], section: Any = None, key: str | None = None,
               problems: list[str] | None = None) -> M:
    """`model` from its environment variables over the config sub-section ``freqtrade_opt.<key>``
    (the whole section for `key` None) over its defaults.

    `section` None: the section handed down to this process (`section_from_environment`). A
    sub-section that is not an object, an unknown key and an invalid value are reported (into
    `problems` when given, else logged once) and ignored / replaced by the field's fallback.
    """
    if section is None:
        section = section_from_environment()
    if key is not None:
        section = section.get(key) if isinstance(section, Mapping) else None
    where = CONFIG_KEY + (f".{key}" if key else "")
    collected: list[str] = []
    init: dict[str, Any] = {}
    if section is not None and not isinstance(section, Mapping):
        collected.append(f"config '{where}' must be an object, got {type(section).__name__} "
                         f"{section!r}; it is ignored")
    elif section is not None:
        fields = model.model_fields
        init = {k: v for k, v in section.items() if k in fields}
        extra = SUBSECTIONS if key is None else ()
        for name in sorted(section.keys() - fields.keys() - set(extra)):
            collected.append(f"config '{where}.{name}' is not a setting; accepted: "
                             f"{', '.join([*fields, *extra])}")
    token = _problems.set(collected)
    try:
        loaded = model(**init)
    finally:
        _problems.reset(token)
    for message in collected:
        if problems is not None:
            problems.append(message)
        else:
            SafeSettings.report(message)
    return loaded


_followers: list[tuple[str, type[SafeSettings], Callable[[Any], None]]] = []


def follow_section(key: str, model: type[M], apply: Callable[[M], None]) -> None:
    """Call ``apply(load_model(model, section, key))`` each time this process learns the config
    section (`export_section`), for a part created before Freqtrade's config was read."""
    _followers.append((key, model, apply))


class GlobalSettings(SafeSettings):
    """Plugin-wide settings."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    level: Annotated[OptimizationLevel, BeforeValidator(OptimizationLevel.parse)] = (
        OptimizationLevel.DISABLED
    )
    error_threshold: int = Field(default=3, ge=1)
    seed: int = 0
    allow_unverified: bool = False
    shadow_percentage: int = Field(default=10, ge=0, le=100)


class OptimizationOverride(BaseModel):
    """Per-optimization settings from the config section."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    percentage: int | None = Field(default=None, ge=0, le=100)


_BOOL = TypeAdapter(bool)
_PERCENTAGE = TypeAdapter(int)


@dataclass(frozen=True)
class Settings:
    """Resolved settings, with where each value came from and the problems met on the way."""

    level: OptimizationLevel = OptimizationLevel.DISABLED
    error_threshold: int = 3
    seed: int = 0
    allow_unverified: bool = False
    shadow_percentage: int = 10
    enabled: Mapping[str, bool] = field(default_factory=dict)
    percentage: Mapping[str, int] = field(default_factory=dict)
    invalid: Mapping[str, str] = field(default_factory=dict)  # optimization -> problem
    sources: Mapping[str, Source] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def _describe(error: Mapping[str, Any]) -> str:
    return error.get("msg", "invalid value")


def _config_section(section: Any, problems: list[str]) -> dict[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        problems.append(
            f"config section '{CONFIG_KEY}' must be an object, got {type(section).__name__} "
            f"{section!r}; it is ignored"
        )
        return {}
    return dict(section)


def _load_globals(section: dict[str, Any], problems: list[str]):
    fields = GlobalSettings.model_fields
    config_globals = {k: v for k, v in section.items() if k in fields}
    model = load_model(GlobalSettings, section, problems=problems)
    from freqtrade_opt_plugin.telemetry.settings import MonitorSettings  # it imports this module

    monitor_problems: list[str] = []
    load_model(MonitorSettings, section, "monitor", monitor_problems)
    problems.extend(p for p in monitor_problems if p not in _reported)  # not logged yet
    sources: dict[str, Source] = {}
    for name in fields:
        if ENV_PREFIX + name.upper() in os.environ:
            sources[name] = "env"
        else:
            sources[name] = "config" if name in config_globals else "default"
    return model, sources


def load_settings(section: Any = None, names: Iterable[str] = ()) -> Settings:
    """Resolve settings for the optimizations `names` from the environment and a config section."""
    environ = os.environ
    problems: list[str] = []
    section = _config_section(section, problems)
    model, sources = _load_globals(section, problems)
    names = list(names)
    enabled: dict[str, bool] = {}
    percentage: dict[str, int] = {}
    invalid: dict[str, str] = {}

    overrides = section.get("optimizations", {})
    if not isinstance(overrides, Mapping):
        problems.append(f"config '{CONFIG_KEY}.optimizations' must be an object, got {overrides!r}")
        overrides = {}
    for name, raw in overrides.items():
        if name not in names:
            problems.append(f"config '{CONFIG_KEY}.optimizations.{name}': unknown optimization; "
                            f"known: {', '.join(names) or 'none'}")
            continue
        try:
            override = OptimizationOverride.model_validate(raw)
        except ValidationError as exc:
            message = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {_describe(e)}" if e["loc"]
                else 'must be an object like {"enabled": true, "percentage": 50}'
                for e in exc.errors())
            where = f"config '{CONFIG_KEY}.optimizations.{name}'"
            invalid[name] = f"{where}={raw!r} is invalid ({message})"
            continue
        if override.enabled is not None:
            enabled[name], sources[f"{name}.enabled"] = override.enabled, "config"
        if override.percentage is not None:
            percentage[name], sources[f"{name}.percentage"] = override.percentage, "config"

    for name in names:
        var = ENV_PREFIX + name.upper()
        for key, adapter, target in ((var, _BOOL, enabled), (var + "_PERCENTAGE", _PERCENTAGE,
                                                               percentage)):
            if key not in environ:
                continue
            value = environ[key]
            try:
                parsed = adapter.validate_python(value.strip())
                if adapter is _PERCENTAGE and not 0 <= parsed <= 100:
                    raise ValueError
            except (ValidationError, ValueError):
                accepted = "true or false" if adapter is _BOOL else "an integer from 0 to 100"
                invalid[name] = f"env {key}={value!r} is invalid; accepted: {accepted}"
                continue
            target[name] = parsed
            sources[f"{name}.{'enabled' if adapter is _BOOL else 'percentage'}"] = "env"

    known = {n.upper() for n in names}
    for key in environ:
        if not key.startswith(ENV_PREFIX):
            continue
        rest = key[len(ENV_PREFIX):]
        base = rest.removesuffix("_PERCENTAGE")
        if rest.startswith(RESERVED) or rest.lower() in GlobalSettings.model_fields \
                or base in known:
            continue
        problems.append(f"env {key}: unknown optimization '{base.lower()}'; known: "
                        f"{', '.join(names) or 'none'}")

    _apply_deprecated_switches(section, names, enabled, invalid, sources, problems)
    for name, problem in invalid.items():
        problems.append(f"{problem}; '{name}' runs the original")
    return Settings(
        level=model.level,
        error_threshold=model.error_threshold,
        seed=model.seed,
        allow_unverified=model.allow_unverified,
        shadow_percentage=model.shadow_percentage,
        enabled=enabled,
        percentage=percentage,
        invalid=invalid,
        sources=sources,
        problems=tuple(problems),
    )


def _apply_deprecated_switches(
    section: Mapping[str, Any],
    names: list[str],
    enabled: dict[str, bool],
    invalid: dict[str, str],
    sources: dict[str, Source],
    problems: list[str],
) -> None:
    """Apply the `DEPRECATED_SWITCHES` that are set (env first, then config), unless the
    optimization's own switch is set or its setting is already invalid."""
    cache_section = section.get("cache")
    for var, (name, key) in DEPRECATED_SWITCHES.items():
        if name not in names:
            continue
        new_var = ENV_PREFIX + name.upper()
        if var in os.environ:
            raw: Any = os.environ[var]
            where, source = f"env {var}", "env"
        elif isinstance(cache_section, Mapping) and key in cache_section:
            raw = cache_section[key]
            where, source = f"config '{CONFIG_KEY}.cache.{key}'", "config"
        else:
            continue
        problems.append(f"{where} is deprecated: use {new_var} (or config '{CONFIG_KEY}."
                        f"optimizations.{name}.enabled'); it still switches '{name}' off")
        if name in enabled or name in invalid:
            continue  # the optimization's own switch wins
        try:
            on = _BOOL.validate_python(raw.strip() if isinstance(raw, str) else raw)
        except ValidationError:
            invalid[name] = f"{where}={raw!r} is invalid; accepted: true or false"
            continue
        if not on:
            enabled[name], sources[f"{name}.enabled"] = False, source


def section_from_environment() -> Any:
    """The config section a parent process handed down (see `export_section`), or None."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        logger.warning("%s is not valid JSON (%r); ignoring it", CONFIG_ENV, raw[:80])
        return None


def export_section(section: Any) -> None:
    """Hand the config section down to worker processes through the environment, and to the
    parts of this process that follow it (`follow_section`)."""
    try:
        os.environ[CONFIG_ENV] = json.dumps(section)
    except (TypeError, ValueError):
        logger.warning("config section '%s' is not JSON-serialisable; workers will not see it",
                       CONFIG_KEY)
    for key, model, apply in list(_followers):
        try:
            apply(load_model(model, section, key))
        except Exception:  # a part that cannot take new settings keeps its old ones
            logger.warning("freqtrade-opt: applying config '%s.%s' failed", CONFIG_KEY, key,
                           exc_info=True)
