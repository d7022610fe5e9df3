"""Telemetry sinks: Prometheus text, OpenTelemetry (OTLP)."""
