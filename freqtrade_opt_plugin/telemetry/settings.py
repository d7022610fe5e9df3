"""Monitor settings: ``FREQTRADE_OPT_MONITOR_<FIELD>`` > config ``freqtrade_opt.monitor`` > default.

Read by the plugin's one settings loader (`settings.load_model`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from freqtrade_opt_plugin.settings import SafeSettings, load_model


ENV_PREFIX = "FREQTRADE_OPT_MONITOR_"
WINDOW = 1000  # default in-process samples kept per (function, path)


class MonitorSettings(SafeSettings):
    """Monitor settings. An invalid value is logged (variable, value, what is accepted) and the
    default is used."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")
    config_path = "freqtrade_opt.monitor"

    persist: bool = True  # write telemetry to the store under state_dir()
    memory_sample_rate: float = Field(default=0.02, ge=0.0, le=1.0)  # most calls traced
    memory_budget: float = Field(default=0.01, ge=0.0, le=1.0)  # traced time / routed time
    flush_every: int = Field(default=10_000, ge=1)  # records between flushes (at most)
    flush_interval: float = Field(default=10.0, gt=0.0)  # seconds between flushes
    samples_per_flush: int = Field(default=500, ge=1)  # stored per path and flush (spread out)
    window: int = Field(default=WINDOW, ge=10, le=100_000)  # in-process samples per path
    max_samples: int = Field(default=2000, ge=10, le=1_000_000)  # stored wall samples per path
    run_samples: int = Field(default=200, ge=10, le=100_000)  # stored CPU samples per path, run
    max_runs: int = Field(default=50, ge=1)  # runs with their own totals; older are folded
    max_store_mb: int = Field(default=32, ge=1)  # hard size cap of the store file
    busy_timeout: float = Field(default=10.0, gt=0.0)  # seconds to wait for other writers
    recent: int = Field(default=200, ge=5)  # newest samples compared within a run
    min_samples: int = Field(default=20, ge=3)  # per side, before a within-run alert
    report_min_samples: int = Field(default=5, ge=1)  # per side, before a speedup is shown
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5)  # significance of the rank tests
    # regressions across runs (see `telemetry.analysis`)
    threshold_percent: float = Field(default=15.0, gt=0.0)  # smallest slowdown alerted
    # Without paired samples (100% rollout) only absolute CPU time per call exists; load alone
    # moved it by 50-140% in single runs on a shared 2-core VM (test_load_proof.py): alerts on it
    # are off unless asked for (a dedicated machine), then from this slowdown on.
    unpaired_alerts: bool = False
    unpaired_threshold_percent: float = Field(default=100.0, gt=0.0)
    # runs a slowdown must last: on a busy machine single runs of the paired ratio moved by up
    # to 34% (tests/telemetry/test_load_proof.py), so 3 consecutive runs, each slower than every
    # run before (chance alone: at most 1 in 20 with 3 earlier runs, 1 in 84 with 6)
    persist_runs: int = Field(default=3, ge=1)
    baseline_runs: int = Field(default=3, ge=1)  # earlier runs it is compared with
    history_runs: int = Field(default=10, ge=2)  # newest runs looked at
    run_min_samples: int = Field(default=3, ge=1)  # calls of a path for a run to count


def load_settings(section: Any = None) -> MonitorSettings:
    """The monitor's settings; `section`: the whole ``freqtrade_opt`` config section (None: the
    one handed down to this process)."""
    return load_model(MonitorSettings, section, "monitor")
