"""Telemetry of routed calls, one concept per module.

``settings``     MonitorSettings (``FREQTRADE_OPT_MONITOR_*``)
``counters``     the hot path: per-thread counters and samples, memory sampling policy
``records``      the store's schema and format, the records it reads and writes
``store``        the persistent SQLite store shared by every process of every run
``hooks``        the dispatcher that hands records and alerts to plugins (injected)
``analysis``     regressions across runs (step detection) and performance gates
``recorder``     `Monitor`: counters + store + flushes + run lifecycle + disabled state + gates
``report_data``  the report as a JSON-ready dict (what every renderer and sink reads)
``html``         the self-contained HTML page (plotly)
``sinks``        Prometheus text, OpenTelemetry (OTLP) export
``fmt``          numbers for people

The process-wide monitor and the module-level API are in `freqtrade_opt_plugin.monitor`.
"""
