"""Reports: the dict, the rich tables, Prometheus text, and the `report` / `reset` commands."""

from __future__ import annotations

import argparse
import io
import json
import random
import re

import pytest
from rich.console import Console

from freqtrade_opt_plugin import monitor as mon
from freqtrade_opt_plugin.commands import report as report_module
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings, generate_performance_report
from freqtrade_opt_plugin.telemetry_store import FILENAME


@pytest.fixture
def state(tmp_path, monkeypatch):
    """A state directory with two runs of telemetry, and a clean process-wide monitor."""
    monkeypatch.setenv("FREQTRADE_OPT_STATE_DIR", str(tmp_path))
    rng = random.Random(7)
    for run in ("run-a", "run-b"):
        m = Monitor(MonitorSettings(), run_id=run)
        m.set_status_provider(lambda: {"level": "standard", "active": ["fast_fn", "slow_fn"]})
        for _ in range(30):
            m.record("fast_fn", "original", rng.gauss(4e-3, 1e-4))
            m.record("fast_fn", "optimized", rng.gauss(1e-3, 3e-5))
            m.record("slow_fn", "original", rng.gauss(1e-3, 3e-5))
            m.record("slow_fn", "optimized", rng.gauss(2e-3, 3e-5))
        m.record("fast_fn", "optimized", 0.01, error=True, fallback=True)
        m.record("fast_fn", "optimized", 0.002, peak_bytes=3 * 2**20)
        m.record("fast_fn", "original", 0.006, peak_bytes=2**20)
        m.record("only_opt", "optimized", 1e-3)
        m.flush()
    g = mon.get_monitor()
    g.forget()
    provider = g.status_provider  # this test process may have activated the plugin itself
    g.set_status_provider(None)
    yield tmp_path
    g.set_status_provider(provider)
    g.forget()


def test_report_dict(state):
    report = generate_performance_report()
    assert set(report) >= {"top_performers", "performance_regressions", "system",
                           "recommendations", "functions"}
    json.dumps(report)  # JSON-ready
    top = report["top_performers"]
    assert [t["function"] for t in top] == ["fast_fn"]
    assert top[0]["improvement_percent"] == pytest.approx(75, abs=3)
    assert top[0]["speedup"] == pytest.approx(4, rel=0.1)
    functions = {f["function"]: f for f in report["functions"]}
    fast = functions["fast_fn"]
    assert fast["optimized"]["calls"] == 64 and fast["original"]["calls"] == 62
    assert fast["optimized"]["errors"] == 2 and fast["optimized"]["fallbacks"] == 2
    assert fast["adoption_rate"] == pytest.approx(64 / 126)
    assert fast["optimized"]["median_seconds"] == pytest.approx(1e-3, rel=0.05)
    assert fast["optimized"]["p95_seconds"] > fast["optimized"]["median_seconds"]
    assert fast["optimized"]["memory"] == {"samples": 2, "median_peak_bytes": 3 * 2**20,
                                           "mean_peak_bytes": 3 * 2**20,
                                           "max_peak_bytes": 3 * 2**20}
    # time saved = clean optimized calls x (original median - optimized median)
    expected = 62 * (fast["original"]["median_seconds"] - fast["optimized"]["median_seconds"])
    assert fast["time_saved_seconds"] == pytest.approx(expected)
    system = report["system"]
    assert system["level"] == "standard" and system["level_source"].startswith("last run")
    assert system["optimizations_active"] == ["fast_fn", "slow_fn"]
    assert system["runs"] == 2 and system["processes_in_run"] == 1
    assert system["total_time_saved_seconds"] == pytest.approx(
        sum(f["time_saved_seconds"] or 0 for f in report["functions"])
    )
    assert "at most 1 call in 50" in system["memory_sampling"]
    regressions = report["performance_regressions"]
    assert [(r["function"], r["kind"]) for r in regressions] == [("slow_fn",
                                                                  "slower_than_original")]
    text = " ".join(report["recommendations"])
    assert "'slow_fn'" in text and "FREQTRADE_OPT_SLOW_FN=false" in text
    assert "'fast_fn' raised 2 error(s)" in text
    assert "'only_opt' has too few timings of the original" in text
    assert "3.0x the original's peak memory" in text


def test_report_of_one_run(state):
    report = generate_performance_report(run="run-b")
    fast = next(f for f in report["functions"] if f["function"] == "fast_fn")
    assert fast["optimized"]["calls"] == 32 and report["system"]["scope"] == "run run-b"


def test_report_without_any_telemetry(tmp_path, monkeypatch):
    monkeypatch.setenv("FREQTRADE_OPT_STATE_DIR", str(tmp_path / "empty"))
    report = generate_performance_report(monitor=Monitor(MonitorSettings(), run_id="x"))
    assert report["functions"] == [] and report["top_performers"] == []
    assert "No routed calls recorded yet" in report["recommendations"][0]
    assert not (tmp_path / "empty").exists()


def test_rich_rendering(state):
    out = io.StringIO()
    report_module.render_report(generate_performance_report(),
                                Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    for title in ("FREQTRADE-OPT CALL TIMINGS", "OPTIMIZATION SUMMARY", "PERFORMANCE REGRESSIONS",
                  "SYSTEM OVERVIEW", "Recommendations:"):
        assert title in text
    assert "fast_fn" in text and "disabled" not in text.split("SYSTEM OVERVIEW")[0]


PROM_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? '
    r"(-?[0-9.e+-]+|NaN|\+Inf|-Inf)$"
)


def test_prometheus_exposition_format(state, tmp_path):
    report = generate_performance_report()
    text = report_module.prometheus_text(report)
    seen_types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, metric, kind = line.split(" ")
            assert metric not in seen_types  # one TYPE line per family
            seen_types[metric] = kind
            continue
        assert PROM_LINE.match(line), line
    assert seen_types["freqtrade_opt_calls_total"] == "counter"
    assert seen_types["freqtrade_opt_call_duration_seconds"] == "summary"
    assert 'freqtrade_opt_calls_total{function="fast_fn",path="optimized"} 64' in text
    assert 'quantile="0.5"' in text and "freqtrade_opt_call_duration_seconds_count" in text
    assert text.endswith("\n")
    target = tmp_path / "textfile" / "freqtrade_opt.prom"
    target.parent.mkdir()
    assert report_module.write_prometheus(report, target) == target
    assert target.read_text() == text
    assert [p.name for p in target.parent.iterdir()] == ["freqtrade_opt.prom"]


def test_prometheus_label_escaping():
    assert report_module._labels(reason='a "quoted"\\ line\nnext') == (
        '{reason="a \\"quoted\\"\\\\ line\\nnext"}'
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="freqtrade-opt")
    sub = p.add_subparsers(dest="command")
    report_module.register(sub)
    return p


def run_cli(*argv: str) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


def test_cli_report_json_and_tables(state, capsys):
    assert run_cli("report", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top_performers"][0]["function"] == "fast_fn"
    assert run_cli("report", "--run", "latest") == 0
    out = capsys.readouterr().out
    assert "OPTIMIZATION SUMMARY" in out and "run run-b" in out


def test_cli_report_prometheus(state, tmp_path, capsys):
    target = tmp_path / "metrics.prom"
    assert run_cli("report", "--prometheus", str(target)) == 0
    assert "Wrote Prometheus metrics" in capsys.readouterr().out
    assert "freqtrade_opt_calls_total" in target.read_text()
    assert run_cli("report", "--prometheus", str(tmp_path)) == 1  # a directory


def test_cli_userdir_option(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FREQTRADE_OPT_STATE_DIR", raising=False)
    monkeypatch.delenv("_FREQTRADE_OPT_USER_DATA_DIR", raising=False)
    user_data = tmp_path / "ud"
    m = Monitor(MonitorSettings(), store_path=user_data / "freqtrade_opt" / FILENAME, run_id="u")
    m.record("x", "optimized", 0.001)
    m.flush()
    assert run_cli("report", "--json", "--userdir", str(user_data)) == 0
    assert json.loads(capsys.readouterr().out)["functions"][0]["function"] == "x"


def test_cli_reset(state, capsys):
    mon.disable("slow_fn", "gate failed")
    assert run_cli("reset", "slow_fn") == 0
    assert "cleared the auto-disabled state and telemetry of slow_fn" in capsys.readouterr().out
    assert mon.disabled() == {}
    names = {f["function"] for f in generate_performance_report()["functions"]}
    assert names == {"fast_fn", "only_opt"}
    assert run_cli("reset", "nothing_here") == 0
    assert "nothing was stored" in capsys.readouterr().out
    assert run_cli("reset") == 0
    assert generate_performance_report()["functions"] == []


def test_cli_reports_a_corrupt_store(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FREQTRADE_OPT_STATE_DIR", str(tmp_path))
    (tmp_path / FILENAME).write_bytes(b"garbage" * 500)
    g = mon.get_monitor()
    g.forget()
    try:
        assert run_cli("report", "--json") == 1
        assert json.loads(capsys.readouterr().out)["system"]["store"]["problem"]
        assert run_cli("reset", "x") == 1
        assert run_cli("reset") == 0
        assert (tmp_path / (FILENAME + ".corrupt")).exists()
    finally:
        g.forget()


def test_the_freqtrade_opt_command_has_report_and_reset(state, capsys):
    cli = pytest.importorskip("freqtrade_opt_plugin.cli")
    assert cli.main(["report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["functions"]
    assert cli.main(["reset", "only_opt"]) == 0
