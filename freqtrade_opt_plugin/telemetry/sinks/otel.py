"""OpenTelemetry metrics export (``pip install "freqtrade-opt-plugin[otel]"``): a telemetry sink.

A plugin like any other: registered under the ``freqtrade_opt`` entry point group as ``otel``,
it implements the monitoring hooks of `freqtrade_opt_plugin.hookspecs`, so it is also the example
to copy for another sink. Off unless configured with OpenTelemetry's standard variables:
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``); the headers,
timeout, compression, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and
``OTEL_METRIC_EXPORT_INTERVAL`` variables apply as usual, ``OTEL_SDK_DISABLED=true`` turns it off.
Protocol: OTLP over HTTP (protobuf).

Every process exports its own calls (hyperopt workers too; resource attributes ``process.pid``
and ``freqtrade_opt.run`` tell them apart, backends sum them):

``freqtrade_opt.calls`` / ``.errors`` / ``.fallbacks``  counters {optimization, path}
``freqtrade_opt.call.time`` / ``.call.cpu_time``        counters of seconds {optimization, path}
                                                       (CPU time: of the calls it was measured on)
``freqtrade_opt.call.duration``                        histogram of the stored call samples (s)
``freqtrade_opt.alerts`` / ``freqtrade_opt.disables``  counters {optimization, kind, measure}
Alerts and disables are also sent as OpenTelemetry log events (``freqtrade_opt.alert``,
``freqtrade_opt.disabled``) with the recommendation as body.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from freqtrade_opt_plugin.hookspecs import hookimpl


logger = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def configured(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name) for name in ENDPOINT_VARIABLES)


class OtelSink:
    """The meters and the providers of one process (created on the first record)."""

    def __init__(self, run: str | None = None, *, export_interval_ms: int | None = None) -> None:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        from freqtrade_opt_plugin import __version__

        attributes: dict[str, Any] = {"process.pid": os.getpid()}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "freqtrade-opt"
        if run:
            attributes["freqtrade_opt.run"] = run
        resource = Resource.create(attributes)
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(),
                                               export_interval_millis=export_interval_ms)
        # shut down by `freqtrade_opt_telemetry_closed`, after the monitor's final flush
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader],
                                            shutdown_on_exit=False)
        self.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
        self._events = self.logger_provider.get_logger("freqtrade_opt", __version__)
        meter = self.meter_provider.get_meter("freqtrade_opt", __version__)
        self.calls = meter.create_counter("freqtrade_opt.calls", "{call}", "Routed calls")
        self.errors = meter.create_counter("freqtrade_opt.errors", "{call}",
                                           "Calls that raised on this path")
        self.fallbacks = meter.create_counter("freqtrade_opt.fallbacks", "{call}",
                                              "Optimized calls that fell back to the original")
        self.time = meter.create_counter("freqtrade_opt.call.time", "s",
                                         "Wall time spent in routed calls")
        self.cpu_time = meter.create_counter("freqtrade_opt.call.cpu_time", "s",
                                             "Thread CPU time of the sampled clean calls")
        self.duration = meter.create_histogram("freqtrade_opt.call.duration", "s",
                                               "Wall time of sampled clean calls")
        self.alerts = meter.create_counter("freqtrade_opt.alerts", "{alert}",
                                           "Performance regressions and gate failures")
        self.disables = meter.create_counter("freqtrade_opt.disables", "{event}",
                                             "Optimizations switched off")

    def records(self, records: Sequence[Any]) -> None:
        for d in records:
            attrs = {"optimization": d.name, "path": d.path}
            self.calls.add(d.calls, attrs)
            self.errors.add(d.errors, attrs)
            self.fallbacks.add(d.fallbacks, attrs)
            self.time.add(d.total_seconds, attrs)
            self.cpu_time.add(d.cpu_seconds, attrs)
            for value in d.timings:
                self.duration.record(value, attrs)

    def event(self, name: str, body: str, attributes: dict[str, Any]) -> None:
        from opentelemetry._logs import LogRecord, SeverityNumber

        fields = {"body": body, "severity_number": SeverityNumber.WARN, "severity_text": "WARN",
                  "attributes": {"event.name": name, **attributes}}
        try:
            self._events.emit(**fields, event_name=name)
        except TypeError:  # SDKs before the keyword form of Logger.emit
            self._events.emit(LogRecord(**fields))

    def alert(self, alert: Any) -> None:
        attrs = {"optimization": alert.function, "kind": alert.kind,
                 "measure": alert.measure or ""}
        self.alerts.add(1, attrs)
        self.event("freqtrade_opt.alert", alert.recommendation, {
            **attrs, "degradation_percent": float(alert.degradation_percent),
            "runs": list(alert.runs),
        })

    def disabled(self, name: str, reason: str) -> None:
        self.disables.add(1, {"optimization": name})
        self.event("freqtrade_opt.disabled", reason, {"optimization": name})

    def flush(self, timeout_ms: int = 10_000) -> bool:
        ok = self.meter_provider.force_flush(timeout_ms)
        return bool(self.logger_provider.force_flush(timeout_ms)) and ok

    def shutdown(self) -> None:
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


_lock = threading.Lock()
_sink: OtelSink | None = None
_unavailable = False


def sink() -> OtelSink | None:
    """This process's sink, created on first use; None when not configured or not installed."""
    global _sink, _unavailable
    if _sink is not None or _unavailable:
        return _sink
    with _lock:
        if _sink is None and not _unavailable:
            if not configured():
                _unavailable = True
                return None
            try:
                run = os.environ.get("_FREQTRADE_OPT_RUN_ID")
                _sink = OtelSink(run)
            except ImportError as exc:
                _unavailable = True
                logger.warning(
                    "freqtrade-opt: %s is set but OpenTelemetry is not installed (%s); "
                    "`pip install \"freqtrade-opt-plugin[otel]\"` enables the export",
                    next(n for n in ENDPOINT_VARIABLES if os.environ.get(n)), exc,
                )
    return _sink


def reset() -> None:
    """Forget this process's sink (tests; after a fork the child makes its own)."""
    global _sink, _unavailable
    with _lock:
        _sink, _unavailable = None, False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset)


# -- hook implementations (see hookspecs.py) ------------------------------------------------------

@hookimpl
def freqtrade_opt_records(records: Sequence[Any]) -> None:
    target = sink()
    if target is not None:
        target.records(records)


@hookimpl
def freqtrade_opt_regression(alert: Any) -> None:
    target = sink()
    if target is not None:
        target.alert(alert)


@hookimpl
def freqtrade_opt_disabled(name: str, reason: str) -> None:
    target = sink()
    if target is not None:
        target.disabled(name, reason)


@hookimpl
def freqtrade_opt_telemetry_closed() -> None:
    target = _sink
    if target is not None:
        try:
            target.flush()
        finally:
            target.shutdown()
            reset()
