"""OpenTelemetry export: a real OTLP/HTTP receiver on 127.0.0.1 decodes the protobuf payloads;
the metric values must equal what ``freqtrade-opt report --json`` shows for the same store."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pluggy
import pytest

from freqtrade_opt_plugin import hookspecs
from freqtrade_opt_plugin.cli import main
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel


pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2  # noqa: E402
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2  # noqa: E402

from freqtrade_opt_plugin.telemetry.sinks import otel  # noqa: E402


class Receiver(ThreadingHTTPServer):
    """A minimal OTLP/HTTP collector: keeps the decoded export requests."""

    def __init__(self) -> None:
        self.metrics: list = []
        self.logs: list = []
        self.content_types: set[str] = set()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Receiver = self.server  # type: ignore[assignment]
        server.content_types.add(self.headers["Content-Type"])
        if self.path == "/v1/metrics":
            request = metrics_service_pb2.ExportMetricsServiceRequest()
            request.ParseFromString(body)
            server.metrics.append(request)
            reply = metrics_service_pb2.ExportMetricsServiceResponse()
        elif self.path == "/v1/logs":
            request = logs_service_pb2.ExportLogsServiceRequest()
            request.ParseFromString(body)
            server.logs.append(request)
            reply = logs_service_pb2.ExportLogsServiceResponse()
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = reply.SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch):
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # only the explicit flushes
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    otel.reset()
    yield server
    otel.reset()
    server.shutdown()
    server.server_close()


def latest_points(requests) -> dict[tuple[str, str, str], float]:
    """(metric, optimization, path or kind) -> value of the newest cumulative data point."""
    out: dict[tuple[str, str, str], tuple[int, float]] = {}
    for request in requests:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points = (metric.sum.data_points if metric.HasField("sum")
                              else metric.histogram.data_points)
                    for p in points:
                        attrs = {a.key: a.value.string_value for a in p.attributes}
                        key = (metric.name, attrs.get("optimization", ""),
                               attrs.get("path", attrs.get("kind", "")))
                        value = (p.as_int if p.HasField("as_int") else p.as_double) if (
                            metric.HasField("sum")) else p.count
                        if key not in out or p.time_unix_nano >= out[key][0]:
                            out[key] = (p.time_unix_nano, value)
    return {k: v for k, (_, v) in out.items()}


def test_metrics_reach_an_otlp_receiver_and_match_the_report(receiver, tmp_path, monkeypatch,
                                                              capsys):
    monkeypatch.setenv("FREQTRADE_OPT_STATE_DIR", str(tmp_path))
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(otel, name="otel")
    m = Monitor(MonitorSettings(flush_every=50), store_path=tmp_path / "telemetry.sqlite3",
                run_id="otel-run", owns_run=True)
    m.set_plugin_manager(pm)
    opt = Optimization(name="slow_fn", target="m:f", replacement=len,
                       tier=OptimizationLevel.STANDARD, fingerprints={})
    m.watch(opt)
    rng = random.Random(5)
    for i in range(120):
        base = rng.gauss(1e-3, 2e-5)
        m.record("fast_fn", "original", base * 1.1, cpu_seconds=base)
        m.record("fast_fn", "optimized", base * 0.4, cpu_seconds=base * 0.35,
                 error=i % 40 == 0, fallback=i % 40 == 0)
        m.record("slow_fn", "original", base, cpu_seconds=base)
        m.record("slow_fn", "optimized", base * 3, cpu_seconds=base * 3)  # fails its gate
    m.close()  # final flush, then `freqtrade_opt_telemetry_closed`: the sink exports
    assert receiver.metrics and receiver.logs
    assert receiver.content_types == {"application/x-protobuf"}
    attributes = receiver.metrics[-1].resource_metrics[0].resource.attributes
    resource = {a.key: a.value for a in attributes}
    assert resource["service.name"].string_value == "freqtrade-opt"
    assert resource["process.pid"].int_value > 0

    assert main(["report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    points = latest_points(receiver.metrics)
    for f in report["functions"]:
        for path in ("optimized", "original"):
            r = f[path]
            key = (f["function"], path)
            assert points[("freqtrade_opt.calls", *key)] == r["calls"]
            assert points[("freqtrade_opt.errors", *key)] == r["errors"]
            assert points[("freqtrade_opt.fallbacks", *key)] == r["fallbacks"]
            assert points[("freqtrade_opt.call.time", *key)] == pytest.approx(r["total_seconds"])
            assert points[("freqtrade_opt.call.cpu_time", *key)] == pytest.approx(
                r["cpu_seconds"])
            assert points[("freqtrade_opt.call.duration", *key)] == r["samples"]
    assert report["functions"][0]["optimized"]["errors"] == 3  # the figures are not all zero
    assert points[("freqtrade_opt.alerts", "slow_fn", "performance_gate")] == 1
    assert points[("freqtrade_opt.disables", "slow_fn", "")] == 1
    events = [
        (next(a.value.string_value for a in rec.attributes if a.key == "event.name"),
         rec.body.string_value)
        for request in receiver.logs for rl in request.resource_logs
        for sl in rl.scope_logs for rec in sl.log_records
    ]
    assert ("freqtrade_opt.disabled", report["system"]["optimizations_disabled"]["slow_fn"]) in (
        events)
    assert any(name == "freqtrade_opt.alert" and "performance gate" in body
               for name, body in events)


def test_off_unless_configured(monkeypatch):
    for name in otel.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    otel.reset()
    assert otel.sink() is None
    assert not otel.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
                                "OTEL_SDK_DISABLED": "true"})
    assert otel.configured({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://x"})
    otel.reset()
