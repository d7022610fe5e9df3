"""Moved to `freqtrade_opt_plugin.telemetry.store`; these names stay importable from here."""

from freqtrade_opt_plugin.telemetry.store import (
    EARLIER_RUNS,
    FILENAME,
    SCHEMA_VERSION,
    PathDelta,
    RunData,
    TelemetryStore,
    Totals,
)


__all__ = [
    "EARLIER_RUNS", "FILENAME", "SCHEMA_VERSION", "PathDelta", "RunData", "TelemetryStore",
    "Totals",
]
