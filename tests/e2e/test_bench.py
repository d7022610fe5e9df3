"""`freqtrade-opt bench`: a tiny real run (2 pairs x 5 days, 1 repetition) and its JSON report,
plus the verdict and arithmetic paths with stand-in runs (no subprocess)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from freqtrade_opt_plugin.commands import bench
from freqtrade_opt_plugin.offline import workspace as workspace_module


TOP_KEYS = {"schema", "mode", "created", "command", "settings", "machine", "sizes", "verdict",
            "exit_code", "error"}
MACHINE_KEYS = {"cpu_count", "cpu_usable", "python", "freqtrade_version", "plugin_version",
                "loadavg_start", "loadavg_end"}


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=160)


def test_parse_scale():
    assert bench.parse_scale("2x30, 5x60,10X90") == [
        bench.Size(2, 30), bench.Size(5, 60), bench.Size(10, 90)
    ]
    assert bench.parse_scale("3x30")[0].label == "3x30"
    for bad, words in (("3x", "PAIRSxDAYS"), ("10*90", "PAIRSxDAYS"), ("0x30", "pairs must"),
                       ("99x30", "pairs must"), ("3x0", "days must"), ("", "empty"),
                       ("3x30,3x30", "twice")):
        with pytest.raises(ValueError, match=words):
            bench.parse_scale(bad)


def test_backtest_bench_smoke_writes_report(tmp_path, monkeypatch, capsys):
    # a caller's per-optimization override must not reach the "stock" run
    monkeypatch.setenv("FREQTRADE_OPT_MAX_DRAWDOWN", "true")
    out = tmp_path / "bench.json"
    code = bench.main(["--scale", "2x5", "--repeat", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == bench.EXIT_IDENTICAL, printed
    assert "Identical results" in printed and "speedup" in printed

    report = json.loads(out.read_text())
    assert TOP_KEYS <= set(report)
    assert report["schema"] == bench.SCHEMA and report["mode"] == "backtest"
    assert report["verdict"] == "IDENTICAL" and report["exit_code"] == 0
    assert report["error"] is None
    assert MACHINE_KEYS <= set(report["machine"])
    assert report["machine"]["cpu_count"] >= 1
    settings = report["settings"]
    assert settings["repeat"] == 1 and settings["level"] == "standard"
    assert settings["stock_env"] == {"FREQTRADE_OPT_LEVEL": "disabled"}
    assert settings["hidden_caller_env"] == ["FREQTRADE_OPT_MAX_DRAWDOWN"]

    [size] = report["sizes"]
    assert (size["label"], size["pairs"], size["days"]) == ("2x5", 2, 5)
    assert len(size["pair_list"]) == 2 and size["candles"] > 2000
    assert [(r["variant"], r["level"], r["repetition"]) for r in size["runs"]] == [
        ("stock", "disabled", 1), ("plugin", "standard", 1)
    ]
    stock, plugin = (r["wall_time"] for r in size["runs"])
    assert size["stock"]["times"] == [stock] and size["stock"]["median"] == stock
    assert size["plugin"]["times"] == [plugin] and size["plugin"]["median"] == plugin
    assert size["ratio"] == pytest.approx(stock / plugin, abs=1e-3)
    assert size["paired_ratios"] == [pytest.approx(stock / plugin, abs=1e-3)]
    assert size["trades"] > 0
    assert size["runs"][0]["trades"] == size["runs"][1]["trades"] == size["trades"]
    [comparison] = size["comparisons"]
    assert comparison["identical"] and comparison["differences"] == 0
    assert comparison["values_compared"] > 30 * size["trades"]
    assert comparison["first_difference"] is None
    assert size["verdict"] == "IDENTICAL" and size["first_difference"] is None


def _fake_backtest_runs(tmp_path: Path):
    """Stand-ins for run_backtest: the plugin runs' third trade closes 1e-9 higher."""
    trade = {"pair": "BTC/USDT", "open_date": "2025-05-01 00:00:00+00:00", "close_rate": 1.5}
    stats = {"strategy": {"SampleStrategy": {"trades": [dict(trade) for _ in range(4)],
                                             "total_trades": 4}},
             "strategy_comparison": [], "metadata": {}}
    changed = copy.deepcopy(stats)
    changed["strategy"]["SampleStrategy"]["trades"][2]["close_rate"] = 1.5 + 1e-9
    walls = iter([4.0, 2.0, 6.0, 2.0, 5.0, 2.5])

    def fake_run_backtest(workspace, env, extra_args=(), *, name=None, timeout=1800):
        plugin = env["FREQTRADE_OPT_LEVEL"] != "disabled"
        chosen = changed if plugin else stats
        result_dir = tmp_path / "runs" / name
        result_dir.mkdir(parents=True)
        return SimpleNamespace(stats=chosen, wall_time=next(walls), result_dir=result_dir,
                               raw_trades=chosen["strategy"]["SampleStrategy"]["trades"])

    return fake_run_backtest


def test_different_results_give_verdict_and_exit_code_1(tmp_path, monkeypatch):
    monkeypatch.setattr(workspace_module, "run_backtest", _fake_backtest_runs(tmp_path))
    report = bench.run_backtest_bench([bench.Size(1, 1)], repeat=3, console=_quiet())
    assert report["verdict"] == "DIFFERENT" and report["exit_code"] == bench.EXIT_DIFFERENT
    [size] = report["sizes"]
    assert [r["variant"] for r in size["runs"]] == ["stock", "plugin"] * 3
    assert size["stock"]["median"] == 5.0 and size["plugin"]["median"] == 2.0
    assert size["ratio"] == 2.5 and size["paired_ratios"] == [2.0, 3.0, 2.0]
    diff = size["first_difference"]
    assert (diff["section"], diff["trade_index"], diff["field"]) == ("trades", 2, "close_rate")
    assert "close_rate" in diff["description"]
    assert size["verdict"] == "DIFFERENT"


def test_min_speedup_exit_code(tmp_path, monkeypatch):
    fake = _fake_backtest_runs(tmp_path)

    def identical(workspace, env, extra_args=(), **kwargs):
        return fake(workspace, {"FREQTRADE_OPT_LEVEL": "disabled"}, **kwargs)

    monkeypatch.setattr(workspace_module, "run_backtest", identical)
    report = bench.run_backtest_bench([bench.Size(1, 1)], repeat=1, min_speedup=3.0,
                                      console=_quiet())
    assert report["verdict"] == "IDENTICAL" and report["sizes"][0]["ratio"] == 2.0
    assert report["exit_code"] == bench.EXIT_TOO_SLOW


def test_hyperopt_marginal_epoch_arithmetic(tmp_path, monkeypatch):
    # wall = start-up + epochs * per-epoch: stock 10 s + 3 s/epoch, plugin 8 s + 2 s/epoch
    cost = {"disabled": (10.0, 3.0), "standard": (8.0, 2.0)}
    epoch = {"loss": -1.0, "params_dict": {"a": 1}, "results_metrics": {"total_trades": 3}}

    def fake_run_hyperopt(workspace, env, extra_args=(), *, epochs, name, **kwargs):
        start, per_epoch = cost[env["FREQTRADE_OPT_LEVEL"]]
        run_dir = tmp_path / name
        run_dir.mkdir()
        results = run_dir / "r.fthypt"
        results.write_text("")
        return SimpleNamespace(wall_time=start + epochs * per_epoch, epochs=[dict(epoch)] * epochs,
                               best=epoch, results_file=results, log_path=run_dir / "log")

    monkeypatch.setattr(workspace_module, "run_hyperopt", fake_run_hyperopt)
    report = bench.run_hyperopt_bench([bench.Size(1, 1)], repeat=2, epochs=5, console=_quiet())
    assert report["mode"] == "hyperopt" and report["verdict"] == "IDENTICAL"
    [size] = report["sizes"]
    assert [(r["variant"], r["epochs_requested"]) for r in size["runs"][:4]] == [
        ("stock", 5), ("plugin", 5), ("stock", 1), ("plugin", 1)
    ]
    assert size["stock"]["wall"]["median"] == 25.0 and size["plugin"]["wall"]["median"] == 18.0
    assert size["stock"]["per_epoch"]["median"] == 5.0
    assert size["stock"]["marginal_epoch"]["median"] == pytest.approx(3.0)
    assert size["plugin"]["marginal_epoch"]["median"] == pytest.approx(2.0)
    assert size["ratio_marginal_epoch"] == pytest.approx(1.5)
    assert size["ratio_wall"] == pytest.approx(25 / 18, abs=1e-3)
    assert len(size["comparisons"]) == 4 and all(c["unit"] == "epochs"
                                                 for c in size["comparisons"])
