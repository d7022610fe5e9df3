"""A third-party optimization package (``example_plugin/freqtrade_opt_example``), installed as a
distribution with a ``freqtrade_opt`` entry point in a site directory on PYTHONPATH: activated in
a real offline backtest (identical to stock), shown by ``status`` and ``report``, verified by
``verify`` and benchmarked by ``microbench`` -- without any change to the plugin's code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from freqtrade_opt_plugin.offline.workspace import run_backtest


EXAMPLE = Path(__file__).parent / "example_plugin" / "freqtrade_opt_example"
NAME = "example_cagr"


@pytest.fixture(scope="module")
def example(rel_workspace, tmp_path_factory, rel) -> dict:
    """The installed example, one backtest with it at level standard, and that run's env."""
    site = tmp_path_factory.mktemp("example-site")
    shutil.copytree(EXAMPLE, site / EXAMPLE.name)
    rel.dist_info(site, "freqtrade-opt-example", f"example = {EXAMPLE.name}")
    state = rel.private_dir(tmp_path_factory.mktemp("example"), "state")
    env = rel.plugin_env(state, PYTHONPATH=f"{site}:{rel.plugin_root}",
                         FREQTRADE_OPT_LEVEL="standard")
    return {"env": env, "run": run_backtest(rel_workspace, env, name="example")}


def cli_json(rel, rel_workspace, env, *args: str):
    proc = rel.opt_cli([*args, "--json"], env, cwd=rel_workspace.root)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_backtest_with_the_example_is_identical_to_stock(example, stock_run, rel):
    rel.assert_same_as_stock(example["run"], stock_run)


def test_example_is_installed_and_reported(example, rel, rel_workspace):
    code, status, err = cli_json(rel, rel_workspace, example["env"], "status")
    assert code == 0, err
    row = next(r for r in status["optimizations"] if r["name"] == NAME)
    assert (row["installed"], row["verified"], row["active"]) == (True, True, True)
    assert row["priority"] == 100 and row["switch"] == "FREQTRADE_OPT_EXAMPLE_CAGR"
    assert row["target"] == "freqtrade.data.metrics:calculate_cagr"

    code, report, err = cli_json(rel, rel_workspace, example["env"], "report")
    assert code == 0, err
    entry = next(f for f in report["functions"] if f["function"] == NAME)
    assert entry["optimized"]["calls"] >= 1 and entry["optimized"]["errors"] == 0


def test_example_is_verified_with_its_own_case(example, rel, rel_workspace):
    code, report, err = cli_json(
        rel, rel_workspace, example["env"], "verify", "--config",
        str(rel_workspace.config_path), "--userdir", str(rel_workspace.user_data), "--strategy",
        rel_workspace.strategy, "--no-backtest", "--backtest-directory",
        str(example["run"].result_dir), "--only", NAME)
    assert code == 0, err
    checks = report["checks"]
    assert {c["optimization"] for c in checks} == {NAME}
    assert {c["status"] for c in checks} == {"exact"}
    assert {c["variant"] for c in checks} == {"cold", "warm"}
    assert "all pairs" in {c["pair"] for c in checks}
    assert report["sources"][NAME].startswith("source verified (same as freqtrade 2026.9)")


def test_example_is_benchmarked_with_its_own_case(example, rel, rel_workspace):
    code, rows, err = cli_json(rel, rel_workspace, example["env"], "microbench", "--only", NAME,
                               "--repeat", "3")
    assert code == 0, err
    (row,) = rows
    assert row["optimization"] == NAME and row["identical"] is True
    assert len(row["times"]["original"]) == len(row["times"]["optimized"]) == 3
    assert row["case"] == "30 days, 1000 -> 1234.5"
