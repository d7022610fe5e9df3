"""Cluster settings and the connection to the Dask scheduler.

``FREQTRADE_OPT_DASK_SCHEDULER=tcp://host:8786`` (or ``{"freqtrade_opt": {"dask": {"scheduler":
"tcp://host:8786"}}}`` in the Freqtrade config) sends hyperopt epochs to that cluster. The
environment wins over the config. TLS: ``tls://host:8786`` plus ``tls_ca_file``, ``tls_cert`` and
``tls_key`` (a `distributed.Security`). Nothing here imports Dask until a connection is made.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_settings import SettingsConfigDict

from freqtrade_opt_plugin.settings import CONFIG_KEY, SafeSettings


logger = logging.getLogger(__name__)

ENV_PREFIX = "FREQTRADE_OPT_DASK_"
SECTION = "dask"
SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")


class ClusterError(RuntimeError):
    """The cluster cannot run this hyperopt; the message says why and what to do."""


def _address(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not value.startswith(SCHEMES):
        raise ValueError(f"accepted: an address like tcp://host:8786 ({', '.join(SCHEMES)})")
    return value


class DaskSettings(SafeSettings):
    """Where the cluster is and how to reach it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")
    config_path = f"{CONFIG_KEY}.{SECTION}"

    scheduler: Annotated[str | None, AfterValidator(_address)] = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    tls_ca_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.scheduler is not None

    def security(self) -> Any:
        """A `distributed.Security` for ``tls://`` schedulers (None for plain tcp)."""
        if not any((self.tls_ca_file, self.tls_cert, self.tls_key)):
            return None
        from distributed import Security

        return Security(
            tls_ca_file=_str(self.tls_ca_file), tls_client_cert=_str(self.tls_cert),
            tls_client_key=_str(self.tls_key), require_encryption=True,
        )


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path.expanduser())


def load(config: Mapping[str, Any] | None = None) -> DaskSettings:
    """Settings from the environment and ``config["freqtrade_opt"]["dask"]`` (bad: logged)."""
    section: Any = {}
    if isinstance(config, Mapping):
        section = (config.get(CONFIG_KEY) or {})
        section = section.get(SECTION, {}) if isinstance(section, Mapping) else {}
    if not isinstance(section, Mapping):
        logger.warning("freqtrade-opt: config '%s.%s' must be an object, got %r; ignored",
                       CONFIG_KEY, SECTION, section)
        section = {}
    return DaskSettings(**section)


def connect(settings: DaskSettings) -> Any:
    """A `distributed.Client` for the configured scheduler; ClusterError if it cannot be reached."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ClusterError(
            f"{ENV_PREFIX}SCHEDULER is set ({settings.scheduler}) but Dask is not installed: "
            'pip install "freqtrade-opt-plugin[dask]"') from exc
    try:
        return Client(settings.scheduler, timeout=settings.timeout_seconds,
                      security=settings.security(), set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler {settings.scheduler} within "
            f"{settings.timeout_seconds:g} s ({type(exc).__name__}: {exc}); start it with "
            f"'dask scheduler' or unset {ENV_PREFIX}SCHEDULER") from exc
