"""Activation in fresh interpreters: auto-load, bindings, kill switch, version guard, plugins."""

import textwrap

from freqtrade_opt_plugin.registry import fingerprint


ROUTED_EVERYWHERE = """
import json, sys
import freqtrade.optimize.backtesting as bt
import freqtrade.data.btanalysis as pkg
import freqtrade.data.btanalysis.historic_precision as hp
import freqtrade.data.btanalysis.trade_parallelism as tp
import freqtrade.plot.plotting as plotting
def routed(f): return hasattr(f, "__freqtrade_opt__")
print(json.dumps({
    "bindings": [routed(bt.get_tick_size_over_time), routed(pkg.get_tick_size_over_time),
                 routed(hp.get_tick_size_over_time), routed(tp.analyze_trade_parallelism),
                 routed(pkg.analyze_trade_parallelism), routed(plotting.analyze_trade_parallelism),
                 routed(bt.Backtesting._get_ohlcv_as_lists)],
    "same_router": bt.get_tick_size_over_time is hp.get_tick_size_over_time,
    "machinery": "freqtrade_opt_plugin.activation" in sys.modules,
}))
"""


def test_auto_load_routes_every_binding(run_python):
    out, _ = run_python(ROUTED_EVERYWHERE)
    assert out["bindings"] == [True] * 7 and out["same_router"] and out["machinery"]


def test_kill_switch_patches_nothing(run_python):
    out, _ = run_python(ROUTED_EVERYWHERE, FREQTRADE_OPT_AUTOLOAD="0")
    assert out["bindings"] == [False] * 7 and not out["machinery"]


def test_start_up_hook_imports_nothing_heavy(run_python):
    out, _ = run_python("""
        import json, sys
        heavy = ["freqtrade", "pandas", "numpy", "pydantic", "pluggy", "pydantic_settings"]
        print(json.dumps({"watcher": "freqtrade_opt_plugin._autoload" in sys.modules,
                          "heavy": [m for m in heavy if m in sys.modules]}))
    """)
    assert out == {"watcher": True, "heavy": []}


def test_deactivate_restores_exact_originals(run_python):
    out, _ = run_python("""
        import json, inspect
        import freqtrade.optimize.backtesting as bt
        import freqtrade.data.btanalysis.historic_precision as hp
        import freqtrade_opt_plugin
        routed = [bt.get_tick_size_over_time, bt.Backtesting._get_ohlcv_as_lists]
        originals = [inspect.unwrap(f) for f in routed]
        freqtrade_opt_plugin.deactivate()
        back = [bt.get_tick_size_over_time is originals[0],
                hp.get_tick_size_over_time is originals[0],
                bt.Backtesting.__dict__["_get_ohlcv_as_lists"] is originals[1],
                bt.Backtesting.__init__ is inspect.unwrap(bt.Backtesting.__init__)]
        import freqtrade.plot.plotting  # a later import must not re-activate
        freqtrade_opt_plugin.activate()
        again = bt.get_tick_size_over_time is routed[0] or hasattr(
            bt.get_tick_size_over_time, "__freqtrade_opt__")
        print(json.dumps({"back": back, "again": again}))
    """)
    assert out == {"back": [True] * 4, "again": True}


def test_version_guard_and_forced_unverified(run_python, tmp_path):
    """A target whose source matches no verified fingerprint is not patched unless forced."""
    plugin = tmp_path / "site"
    (plugin / "drifted_opt").mkdir(parents=True)
    (plugin / "drifted_opt" / "__init__.py").write_text(textwrap.dedent("""
        from freqtrade_opt_plugin.hookspecs import hookimpl
        from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel

        def evaluate_result_multi(trades, timeframe, max_open_trades):
            raise NotImplementedError

        @hookimpl
        def freqtrade_opt_register_optimizations():
            return [Optimization(
                name="drifted", replacement=evaluate_result_multi,
                target="freqtrade.data.btanalysis.trade_parallelism:evaluate_result_multi",
                tier=OptimizationLevel.CONSERVATIVE, fingerprints={"2020.1": "0000"})]
    """))
    _dist_info(plugin, "drifted-opt", "drifted = drifted_opt")
    code = """
        import json
        import freqtrade.data.btanalysis.trade_parallelism as tp
        from freqtrade_opt_plugin.commands.status import collect_status
        row = [r for r in collect_status()["optimizations"] if r["name"] == "drifted"][0]
        print(json.dumps({"patched": hasattr(tp.evaluate_result_multi, "__freqtrade_opt__"),
                          "verified": row["verified"], "reason": row["reason"]}))
    """
    out, _ = run_python(code, PYTHONPATH=plugin, FREQTRADE_OPT_LEVEL="standard")
    assert out["patched"] is False and out["verified"] is False
    assert "differs from every verified version" in out["reason"]
    out, err = run_python(code, PYTHONPATH=plugin, FREQTRADE_OPT_LEVEL="standard",
                          FREQTRADE_OPT_ALLOW_UNVERIFIED="true")
    assert out["patched"] is True and "PATCHING UNVERIFIED 'drifted'" in err


def _dist_info(site, name, entry_point):
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[freqtrade_opt]\n{entry_point}\n")


def test_third_party_plugin_distribution_is_applied(run_python, tmp_path):
    """A second installed distribution registers through the entry point like the built-ins."""
    import inspect

    import freqtrade.data.btanalysis.trade_parallelism as tp

    original_fp = fingerprint(inspect.unwrap(tp.evaluate_result_multi))
    site = tmp_path / "site"
    (site / "thirdparty_opt").mkdir(parents=True)
    (site / "thirdparty_opt" / "__init__.py").write_text(textwrap.dedent(f"""
        from freqtrade_opt_plugin.hookspecs import hookimpl
        from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel
        CALLS = []

        def evaluate_result_multi(trades, timeframe, max_open_trades):
            import inspect
            import freqtrade.data.btanalysis.trade_parallelism as tp
            CALLS.append(timeframe)
            return inspect.unwrap(tp.evaluate_result_multi)(trades, timeframe, max_open_trades)

        @hookimpl
        def freqtrade_opt_register_optimizations():
            return [Optimization(
                name="thirdparty_multi", replacement=evaluate_result_multi,
                target="freqtrade.data.btanalysis.trade_parallelism:evaluate_result_multi",
                tier=OptimizationLevel.CONSERVATIVE, fingerprints={{"2026.9": "{original_fp}"}})]
    """))
    (site / "broken_opt.py").write_text("raise ImportError('this plugin is broken')\n")
    _dist_info(site, "thirdparty-opt", "thirdparty = thirdparty_opt")
    _dist_info(site, "broken-opt", "broken = broken_opt")
    out, err = run_python("""
        import json
        import pandas as pd
        import freqtrade.data.btanalysis as pkg
        import thirdparty_opt
        from freqtrade_opt_plugin.activation import current
        trades = pd.DataFrame({"pair": ["A/B"], "open_date": [pd.Timestamp("2024-01-01", tz="UTC")],
                               "close_date": [pd.Timestamp("2024-01-01 01:00", tz="UTC")]})
        pkg.evaluate_result_multi(trades, "5m", 1)
        plugins = sorted(n for n, _ in current().plugin_manager.list_name_plugin())
        print(json.dumps({"calls": thirdparty_opt.CALLS, "plugins": plugins,
                          "errors": sorted(current().plugin_errors)}))
    """, PYTHONPATH=site, FREQTRADE_OPT_LEVEL="conservative")
    assert out["calls"] == ["5m"]
    assert "builtin" in out["plugins"] and "thirdparty" in out["plugins"]
    assert out["errors"] == ["broken"] and "plugin 'broken'" in err


def test_config_section_reaches_settings_and_workers(run_python):
    out, _ = run_python("""
        import json, os
        from freqtrade_opt_plugin import activation
        import freqtrade.optimize.backtesting  # activates
        activation.learn_config({"freqtrade_opt": {"level": "aggressive"},
                                 "user_data_dir": "ud"})
        print(json.dumps({"level": activation.current().flags.settings.level.name,
                          "exported": os.environ.get("_FREQTRADE_OPT_CONFIG")}))
    """)
    assert out == {"level": "AGGRESSIVE", "exported": '{"level": "aggressive"}'}
