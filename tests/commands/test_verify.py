"""``freqtrade-opt verify`` on a generated offline workspace: exact for the real replacements,
and a deliberately wrong one is named with its function, pair and first difference."""

from __future__ import annotations

import dataclasses
import inspect
import io
import json

import pytest
from rich.console import Console

from freqtrade_opt_plugin import cli
from freqtrade_opt_plugin.commands import verify
from freqtrade_opt_plugin.hookspecs import hookimpl
from freqtrade_opt_plugin.offline.markets import FIXTURE_PATH, MARKETS_ENV
from freqtrade_opt_plugin.optimizations import max_drawdown, tick_size
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel, case_of
from freqtrade_opt_plugin.telemetry_store import FILENAME


def _workspace_args(workspace) -> list[str]:
    return ["verify", "--config", str(workspace.config_path), "--userdir",
            str(workspace.user_data), "--strategy", workspace.strategy]


def test_verify_command_reports_every_optimization_exact(rel_workspace, rel, tmp_path):
    """The real command in a fresh process: a quick backtest (offline markets) for the trades,
    every registered optimization checked and exact, exit code 0, no telemetry written."""
    state = rel.private_dir(tmp_path, "state")
    env = rel.plugin_env(state, FREQTRADE_OPT_LEVEL="standard", **{MARKETS_ENV: str(FIXTURE_PATH)})
    proc = rel.opt_cli([*_workspace_args(rel_workspace), "--json"], env, cwd=rel_workspace.root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["exit_code"] == 0 and report["different"] == 0
    assert report["trades_source"].startswith("a quick backtest of ")

    registered, _ = verify.registered_optimizations()
    by_name: dict[str, list[dict]] = {}
    for check in report["checks"]:
        by_name.setdefault(check["optimization"], []).append(check)
    assert set(by_name) == set(registered)
    for name, opt in registered.items():
        statuses = {c["status"] for c in by_name[name]}
        if case_of(opt, "verify_case", registered.values()) is not None:
            assert statuses == {"exact"}, by_name[name]
        else:  # e.g. an optimization added later: reported, never silently dropped
            assert statuses == {"skipped"} and "no verifier" in by_name[name][0]["detail"]
    pairs = {c["pair"] for c in by_name["tick_size"]}
    assert pairs == set(rel.pairs)
    assert {c["pair"] for c in by_name["ohlcv_as_lists"]} == {*rel.pairs, verify.ALL_PAIRS}
    assert verify.ALL_PAIRS in {c["pair"] for c in by_name["max_drawdown"]}
    assert all(s.startswith("source verified") for s in report["sources"].values())
    assert not (state / FILENAME).exists()  # the plugin was deactivated in the verify process


class WrongDrawdownPlugin:
    """A third-party plugin whose drawdown is off by a hair (and whose source is unverified)."""

    @hookimpl
    def freqtrade_opt_register_optimizations(self):
        from freqtrade.data.metrics import calculate_max_drawdown

        original = inspect.unwrap(calculate_max_drawdown)

        def wrong(trades, **kwargs):
            result = original(trades, **kwargs)
            return dataclasses.replace(result, drawdown_abs=result.drawdown_abs + 1e-9)

        return [Optimization(name="wrong_drawdown", target=max_drawdown.OPTIMIZATION.target,
                             replacement=wrong, tier=OptimizationLevel.EXPERIMENTAL,
                             fingerprints={})]


@pytest.fixture
def wrong_tick_size(monkeypatch):
    """The built-in tick_size, replaced by one that is wrong for BTC/USDT only (price > 10000)."""
    original = inspect.unwrap(verify.resolve_original(tick_size.OPTIMIZATION.target))

    def wrong(candles):
        result = original(candles)
        return result * 10 if candles["close"].iloc[0] > 10_000 else result

    monkeypatch.setattr(tick_size, "OPTIMIZATION",
                        dataclasses.replace(tick_size.OPTIMIZATION, replacement=wrong,
                                            factory=None))


def test_verify_names_a_wrong_replacement(rel_workspace, stock_run, wrong_tick_size, capsys):
    """In-process, trades from the most recent backtest result (--no-backtest): exit code 1, and
    the wrong optimizations, their functions, pairs and first differences are named."""
    args = cli.build_parser().parse_args([
        *_workspace_args(rel_workspace), "--no-backtest",
        "--backtest-directory", str(stock_run.result_dir),
    ])
    buffer = io.StringIO()
    code = verify.execute(args, deactivate=False, extra_plugins=[WrongDrawdownPlugin()],
                          console=Console(file=buffer, width=1000, color_system=None))
    out = buffer.getvalue()
    assert code == 1, out
    rows = {tuple(cell.strip() for cell in line.split("│")[1:6]) for line in out.splitlines()
            if line.startswith("│")}
    assert ("tick_size", "get_tick_size_over_time", "ETH/USDT", "", "exact") in rows
    assert ("tick_size", "get_tick_size_over_time", "XRP/USDT", "", "exact") in rows
    btc = [r for r in rows if r[:3] == ("tick_size", "get_tick_size_over_time", "BTC/USDT")]
    assert len(btc) == 1 and btc[0][4].startswith("DIFFERENT: result: Series are different")
    drawdown = [r for r in rows if r[0] == "wrong_drawdown"]
    assert drawdown and all(r[1] == "calculate_max_drawdown" for r in drawdown)
    assert all(r[4].startswith("DIFFERENT: result.drawdown_abs: ") for r in drawdown)
    assert {r[2] for r in drawdown} == {verify.ALL_PAIRS, *(p for p in rel_workspace.pairs
                                                            if p in set(stock_run.trades.pair))}
    assert ("max_drawdown", "calculate_max_drawdown", verify.ALL_PAIRS, "relative",
            "exact") in rows
    assert "wrong_drawdown: source differs from every verified version" in out
    assert "first: tick_size (get_tick_size_over_time) on BTC/USDT: result: Series are" in out
    assert "most recent backtest result" in out


def test_verify_without_data_exits_2_with_a_message(rel_workspace, tmp_path):
    args = cli.build_parser().parse_args([
        *_workspace_args(rel_workspace), "--no-backtest", "--datadir", str(tmp_path),
    ])
    buffer = io.StringIO()
    code = verify.execute(args, deactivate=False, console=Console(file=buffer, width=300))
    assert code == 2
    assert "no 5m candles in" in buffer.getvalue() and "download data first" in buffer.getvalue()
