"""Cache settings: environment (``FREQTRADE_OPT_CACHE_*``) > config section > defaults.

The config section is ``{"freqtrade_opt": {"cache": {...}}}`` in the Freqtrade config, with the
same names in lower case without the prefix (``{"ohlcv_size_mb": 2048}``). ``redis_*`` settings
configure the shared tier (``cache/redis_tier.py``). A bad value never
raises: one warning names the variable, the value and what is accepted, and the default is used
(for the on/off switches: off).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from freqtrade_opt_plugin.settings import SafeSettings


logger = logging.getLogger(__name__)

ENV_PREFIX = "FREQTRADE_OPT_CACHE_"
CACHE_NAMES = ("ohlcv", "analysis", "temporary", "backtesting")
DEFAULTS: dict[str, tuple[float, float]] = {  # name: (size MB, TTL seconds)
    "ohlcv": (1024, 2 * 3600),
    "analysis": (200, 3600),
    "temporary": (50, 5 * 60),
    "backtesting": (500, 30 * 60),
}
_REDIS_SWITCHES = tuple(f"redis_{name}" for name in CACHE_NAMES)
_SWITCHES = ("enabled", "indicators", "backtests", "redis_allow_plaintext",
             *_REDIS_SWITCHES)  # invalid value -> off
_ACCEPTED = {
    "enabled": "true or false",
    "indicators": "true or false",
    "backtests": "true or false",
    "dir": "a directory path",
    "timeout_seconds": "a number of seconds > 0",
    "redis_url": "redis://, rediss:// or unix:// URL",
    "redis_password": "a string",
    "redis_signing_key": "a string",
    "redis_namespace": "1-64 letters, digits, '_', '.' or '-'",
    "redis_ttl_seconds": "a number of seconds >= 0 (0: no expiry)",
    "redis_max_entry_mb": "a number of megabytes > 0",
    "redis_lock_wait_seconds": "a number of seconds >= 0 (0: no lock)",
    **{name: "true or false" for name in ("redis_allow_plaintext", *_REDIS_SWITCHES)},
}
_reported: set[tuple[str, str]] = set()


class CacheSettings(SafeSettings):
    """Settings of the four caches. Sizes in MB (2**20 bytes), TTLs in seconds."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")
    config_path = "freqtrade_opt.cache"

    enabled: bool = True
    dir: Path | None = None
    timeout_seconds: float = Field(default=5.0, gt=0)
    indicators: bool = True
    backtests: bool = True
    ohlcv_size_mb: float = Field(default=DEFAULTS["ohlcv"][0], gt=0)
    ohlcv_ttl_seconds: float = Field(default=DEFAULTS["ohlcv"][1], gt=0)
    analysis_size_mb: float = Field(default=DEFAULTS["analysis"][0], gt=0)
    analysis_ttl_seconds: float = Field(default=DEFAULTS["analysis"][1], gt=0)
    temporary_size_mb: float = Field(default=DEFAULTS["temporary"][0], gt=0)
    temporary_ttl_seconds: float = Field(default=DEFAULTS["temporary"][1], gt=0)
    backtesting_size_mb: float = Field(default=DEFAULTS["backtesting"][0], gt=0)
    backtesting_ttl_seconds: float = Field(default=DEFAULTS["backtesting"][1], gt=0)
    # the shared tier (cache/redis_tier.py); off without a URL
    redis_url: str | None = None
    redis_password: SecretStr | None = None
    redis_signing_key: SecretStr | None = None
    redis_namespace: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    redis_ttl_seconds: float = Field(default=7 * 86400, ge=0)
    redis_timeout_seconds: float = Field(default=1.0, gt=0)
    redis_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    redis_retry_seconds: float = Field(default=30.0, gt=0)
    redis_max_entry_mb: float = Field(default=32, gt=0)
    redis_lock_seconds: float = Field(default=60, gt=0)
    redis_lock_wait_seconds: float = Field(default=10, ge=0)
    redis_allow_plaintext: bool = False
    redis_ohlcv: bool = True
    redis_analysis: bool = True
    redis_temporary: bool = False
    redis_backtesting: bool = True

    @classmethod
    def fallback(cls, name: str) -> Any:
        return False if name in _SWITCHES else cls.model_fields[name].default

    @classmethod
    def accepted(cls, name: str) -> str:
        if name in _ACCEPTED:
            return _ACCEPTED[name]
        return "a number of megabytes > 0" if name.endswith("_size_mb") else \
            "a number of seconds > 0"

    def size_limit(self, name: str) -> int:
        """Size limit of cache `name` in bytes."""
        return int(getattr(self, f"{name}_size_mb") * 2**20)

    def ttl(self, name: str) -> float:
        """Default time to live of cache `name` in seconds."""
        return float(getattr(self, f"{name}_ttl_seconds"))

    def shares(self, name: str) -> bool:
        """Whether cache `name` uses the Redis tier (a URL is set and its switch is on)."""
        return bool(self.enabled and self.redis_url and getattr(self, f"redis_{name}"))


def load_cache_settings(section: Mapping[str, Any] | None = None) -> CacheSettings:
    """Resolve the settings from the environment and the config section ``freqtrade_opt.cache``."""
    fields = CacheSettings.model_fields
    init: dict[str, Any] = {}
    if section is not None:
        if not isinstance(section, Mapping):
            logger.warning(
                "freqtrade-opt cache: config 'freqtrade_opt.cache' must be an object, got %r; "
                "ignoring it", section,
            )
        else:
            for key, value in section.items():
                if key in fields:
                    init[key] = value
                elif ("section", key) not in _reported:
                    _reported.add(("section", key))
                    logger.warning(
                        "freqtrade-opt cache: config 'freqtrade_opt.cache.%s' is not a setting; "
                        "accepted: %s", key, ", ".join(fields),
                    )
    try:
        return CacheSettings(**init)
    except ValidationError as exc:  # pragma: no cover - the wrap validator catches field errors
        logger.warning("freqtrade-opt cache: invalid settings (%s); caching is off", exc)
        return CacheSettings.model_construct(enabled=False)
