"""Settings: env > config section > defaults; bad values are reported and made safe."""

import pytest

from freqtrade_opt_plugin.registry import OptimizationLevel
from freqtrade_opt_plugin.settings import load_settings


NAMES = ["tick_size", "ohlcv_as_lists"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("FREQTRADE_OPT_"):
            monkeypatch.delenv(key)


def test_defaults_are_opt_in():
    s = load_settings(None, NAMES)
    assert s.level is OptimizationLevel.DISABLED
    assert s.sources["level"] == "default"
    assert s.problems == ()


def test_env_wins_over_config_which_wins_over_defaults(monkeypatch):
    section = {"level": "conservative", "error_threshold": 7,
               "optimizations": {"tick_size": {"enabled": False, "percentage": 40}}}
    s = load_settings(section, NAMES)
    assert (s.level, s.error_threshold) == (OptimizationLevel.CONSERVATIVE, 7)
    assert s.enabled["tick_size"] is False and s.percentage["tick_size"] == 40
    assert s.sources["level"] == "config" and s.sources["tick_size.percentage"] == "config"

    monkeypatch.setenv("FREQTRADE_OPT_LEVEL", "Aggressive")
    monkeypatch.setenv("FREQTRADE_OPT_TICK_SIZE", "true")
    monkeypatch.setenv("FREQTRADE_OPT_TICK_SIZE_PERCENTAGE", "60")
    s = load_settings(section, NAMES)
    assert s.level is OptimizationLevel.AGGRESSIVE and s.error_threshold == 7
    assert s.enabled["tick_size"] is True and s.percentage["tick_size"] == 60
    assert s.sources["level"] == "env" and s.sources["error_threshold"] == "config"
    assert s.sources["tick_size.enabled"] == "env"


def test_invalid_level_names_variable_value_and_choices_and_disables(monkeypatch):
    monkeypatch.setenv("FREQTRADE_OPT_LEVEL", "turbo")
    s = load_settings({"level": "standard"}, NAMES)
    assert s.level is OptimizationLevel.DISABLED
    (problem,) = s.problems
    assert "FREQTRADE_OPT_LEVEL" in problem and "'turbo'" in problem
    assert "conservative" in problem and "experimental" in problem


@pytest.mark.parametrize("value", ["abc", "-1", "101", "50.5", ""])
def test_invalid_percentage_runs_original(monkeypatch, value):
    monkeypatch.setenv("FREQTRADE_OPT_TICK_SIZE_PERCENTAGE", value)
    s = load_settings(None, NAMES)
    assert "tick_size" in s.invalid
    assert any("FREQTRADE_OPT_TICK_SIZE_PERCENTAGE" in p and repr(value) in p
               and "0 to 100" in p for p in s.problems)


def test_invalid_flag_and_unknown_name(monkeypatch):
    monkeypatch.setenv("FREQTRADE_OPT_TICK_SIZE", "maybe")
    monkeypatch.setenv("FREQTRADE_OPT_TICKSIZE", "true")
    s = load_settings(None, NAMES)
    assert "tick_size" in s.invalid
    assert any("FREQTRADE_OPT_TICKSIZE" in p and "unknown optimization" in p for p in s.problems)
    assert any("true or false" in p for p in s.problems)


def test_reserved_variables_are_not_unknown_optimizations(monkeypatch):
    for var in ("FREQTRADE_OPT_AUTOLOAD", "FREQTRADE_OPT_STATE_DIR", "FREQTRADE_OPT_CACHE_ENABLED",
                "FREQTRADE_OPT_MONITOR_FLUSH_SECONDS", "FREQTRADE_OPT_SEED"):
        monkeypatch.setenv(var, "1")
    assert load_settings(None, NAMES).problems == ()


@pytest.mark.parametrize(
    "section, fragment",
    [
        (["level", "standard"], "must be an object"),
        ({"levle": "standard"}, "'freqtrade_opt.levle' is not a setting"),
        ({"optimizations": {"tick_size": {"percentage": "lots"}}}, "tick_size"),
        ({"optimizations": {"tick_size": {"enabld": True}}}, "enabld"),
        ({"optimizations": {"nope": {}}}, "unknown optimization"),
        ({"optimizations": 5}, "must be an object"),
        ({"error_threshold": "x"}, "error_threshold"),
    ],
)
def test_malformed_config_section_is_reported_never_raised(section, fragment):
    s = load_settings(section, NAMES)
    assert any(fragment in p for p in s.problems), s.problems


CACHES = ["backtest_cache", "indicator_cache", "tick_size"]


def test_deprecated_switch_still_switches_off_and_says_so(monkeypatch):
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_BACKTESTS", "false")
    s = load_settings(None, CACHES)
    assert s.enabled == {"backtest_cache": False}
    assert s.sources["backtest_cache.enabled"] == "env"
    (problem,) = s.problems
    assert "FREQTRADE_OPT_CACHE_BACKTESTS is deprecated" in problem
    assert "use FREQTRADE_OPT_BACKTEST_CACHE" in problem


def test_deprecated_switch_true_leaves_it_to_the_level(monkeypatch):
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_INDICATORS", "true")
    s = load_settings(None, CACHES)
    assert "indicator_cache" not in s.enabled
    assert any("FREQTRADE_OPT_CACHE_INDICATORS is deprecated" in p for p in s.problems)


def test_the_new_switch_wins_over_its_alias(monkeypatch):
    monkeypatch.setenv("FREQTRADE_OPT_CACHE_BACKTESTS", "false")
    monkeypatch.setenv("FREQTRADE_OPT_BACKTEST_CACHE", "true")
    s = load_settings(None, CACHES)
    assert s.enabled["backtest_cache"] is True


def test_deprecated_config_switch_and_invalid_alias_value(monkeypatch):
    s = load_settings({"cache": {"indicators": False}}, CACHES)
    assert s.enabled == {"indicator_cache": False}
    assert s.sources["indicator_cache.enabled"] == "config"
    assert any("'freqtrade_opt.cache.indicators' is deprecated" in p for p in s.problems)

    monkeypatch.setenv("FREQTRADE_OPT_CACHE_BACKTESTS", "maybe")
    s = load_settings(None, CACHES)
    assert "FREQTRADE_OPT_CACHE_BACKTESTS='maybe' is invalid" in s.invalid["backtest_cache"]


def test_deprecation_is_logged_once_per_process(run_python):
    out, err = run_python("""
        import json
        import freqtrade.optimize.backtesting  # activates
        from freqtrade_opt_plugin import activation
        activation.learn_config({"freqtrade_opt": {"level": "aggressive"}})
        activation.learn_config({"freqtrade_opt": {"level": "aggressive"}})
        decision = activation.current().flags.decisions["backtest_cache"]
        print(json.dumps({"reason": decision.reason}))
    """, FREQTRADE_OPT_CACHE_BACKTESTS="false")
    assert err.count("FREQTRADE_OPT_CACHE_BACKTESTS is deprecated") == 1
    assert out["reason"] == "flag off (env)"


# --- one loader for every section ----------------------------------------------------------------

def test_the_monitor_section_is_accepted_and_checked_with_the_rest():
    assert load_settings({"monitor": {"threshold_percent": 20}}, NAMES).problems == ()
    problems = load_settings({"monitor": {"bogus": 1, "threshold_percent": "x"}}, NAMES).problems
    assert any("'freqtrade_opt.monitor.bogus' is not a setting" in p for p in problems)
    assert any("'freqtrade_opt.monitor.threshold_percent'='x' is invalid" in p for p in problems)
    problems = load_settings({"monitor": [1]}, NAMES).problems
    assert any("'freqtrade_opt.monitor' must be an object" in p for p in problems)


def test_monitor_settings_env_over_config_over_defaults(monkeypatch):
    from freqtrade_opt_plugin.telemetry.settings import load_settings as monitor_settings

    assert monitor_settings({}).threshold_percent == 15.0
    assert monitor_settings({"monitor": {"threshold_percent": 20}}).threshold_percent == 20.0
    monkeypatch.setenv("FREQTRADE_OPT_MONITOR_THRESHOLD_PERCENT", "30")
    assert monitor_settings({"monitor": {"threshold_percent": 20}}).threshold_percent == 30.0


def test_monitor_takes_the_section_when_the_config_is_learned(monkeypatch):
    from freqtrade_opt_plugin import monitor, settings

    m = monitor.get_monitor()
    before = m.settings
    monkeypatch.setenv(settings.CONFIG_ENV, "{}")  # restored afterwards
    try:
        settings.export_section({"monitor": {"flush_every": 7, "threshold_percent": 25}})
        assert (m.settings.flush_every, m.settings.threshold_percent) == (7, 25.0)
        assert monitor.load_settings().flush_every == 7  # what workers read, handed down
    finally:
        m.configure(before)
    assert m.settings is before
