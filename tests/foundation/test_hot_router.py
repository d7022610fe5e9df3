"""Lean routing of hot tiny functions (`Optimization(hot=True)`, `hot_router`)."""

import pytest

from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.hot_router import SAMPLE_EVERY
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel
from freqtrade_opt_plugin.router import candidates_of, make_router
from freqtrade_opt_plugin.settings import Settings


def original(values, x):
    return ("original", x)


def hot(name="hot", factory=None, **fields):
    def default_factory(wrapped):
        def fast(values, x):
            if x == "raise":
                raise RuntimeError("bad input")
            if x == "below":
                return wrapped(values, x)
            values.append(x)  # a mutation the Router must undo on failure
            return ("fast", x)
        return fast

    return Optimization(name=name, target="m:original", factory=factory or default_factory,
                        tier=OptimizationLevel.STANDARD, fingerprints={}, hot=True, **fields)


def build(opt, level=OptimizationLevel.STANDARD, **settings):
    flags = Flags([opt], Settings(level=level, **settings))
    monitor = Monitor(MonitorSettings(persist=False))
    return make_router(opt, original, flags, monitor), flags, monitor


def calls(monitor, name, path):
    stats = monitor.stats(name).get(path)
    return (0, 0) if stats is None else (stats.calls, stats.timed_calls)


def test_counts_are_exact_and_one_call_in_n_is_timed():
    router, _, monitor = build(hot())
    n = 3 * SAMPLE_EVERY + 5
    for i in range(n):
        assert router([], i) == ("fast", i)
    # reading the stats drains the untimed calls counted since the last record
    assert calls(monitor, "hot", "optimized") == (n, 3)
    stats = monitor.stats("hot")["optimized"]
    assert stats.total_seconds > 0 and stats.timed_seconds > 0
    for i in range(SAMPLE_EVERY):  # counting goes on after a drain, nothing counted twice
        router([], i)
    assert calls(monitor, "hot", "optimized") == (n + SAMPLE_EVERY, 4)
    assert calls(monitor, "hot", "original") == (0, 0)


def test_a_failing_replacement_falls_back_with_restored_arguments_and_counts_the_error():
    router, flags, monitor = build(hot(), error_threshold=2)
    values = ["kept"]
    for i in range(SAMPLE_EVERY - 1):
        router([], i)
    assert router(values, "raise") == ("original", "raise")
    assert values == ["kept"]
    assert flags.errors["hot"] == 1
    stats = monitor.stats("hot")["optimized"]
    assert (stats.calls, stats.errors, stats.fallbacks) == (SAMPLE_EVERY, 1, 1)
    router([], "raise")
    assert flags.decisions["hot"].percentage == 0  # the threshold switched it off
    assert router([], 1) == ("original", 1)  # the precomputed decision followed the flags


def test_errors_of_wrapped_and_declared_ones_pass_through_unchanged():
    def failing_below(values, x):
        raise KeyError(x)

    opt = hot(propagates=(LookupError,))
    flags = Flags([opt], Settings(level=OptimizationLevel.STANDARD))
    router = make_router(opt, failing_below, flags, Monitor(MonitorSettings(persist=False)))
    with pytest.raises(KeyError):
        router([], "below")
    assert flags.errors["hot"] == 0


def test_off_path_calls_the_layer_below_and_reenabling_takes_effect():
    router, flags, monitor = build(hot(), level=OptimizationLevel.CONSERVATIVE)
    values = []
    assert router(values, 1) == ("original", 1) and values == []
    flags.refresh(Settings(level=OptimizationLevel.STANDARD))
    assert router(values, 2) == ("fast", 2) and values == [2]
    flags.refresh(Settings(level=OptimizationLevel.DISABLED))
    assert router(values, 3) == ("original", 3)
    assert calls(monitor, "hot", "original")[0] == 2
    assert calls(monitor, "hot", "optimized")[0] == 1


def test_partial_rollout_asks_the_flags_per_call():
    router, _, monitor = build(hot(default_percentage=50))
    results = [router([], i)[0] for i in range(400)]
    assert 100 < results.count("fast") < 300
    assert calls(monitor, "hot", "optimized")[0] == results.count("fast")
    assert calls(monitor, "hot", "original")[0] == results.count("original")


def test_forked_child_forgets_the_parents_pending_calls():
    router, _, monitor = build(hot())
    for i in range(10):
        router([], i)
    monitor.after_fork()
    assert calls(monitor, "hot", "optimized") == (0, 0)


def test_a_hot_and_a_standard_candidate_share_one_chain():
    def outer_factory(wrapped):
        def outer(values, x):
            return ("outer", wrapped(values, x))
        return outer

    outer = Optimization(name="outer", target="m:original", factory=outer_factory, priority=10,
                         tier=OptimizationLevel.STANDARD, fingerprints={})
    inner = hot("inner")
    flags = Flags([outer, inner], Settings(level=OptimizationLevel.STANDARD))
    router = make_router([outer, inner], original, flags, Monitor(MonitorSettings(persist=False)))
    assert [o.name for o in candidates_of(router)] == ["outer", "inner"]
    assert router([], 1) == ("outer", ("fast", 1))


ACTIVATION = """
import json
from freqtrade.persistence.trade_model import LocalTrade
from freqtrade_opt_plugin import activation
from freqtrade_opt_plugin.router import is_router

state = activation.activate()
trade = LocalTrade(pair="A/B", stake_amount=10.0, amount=1.0, open_rate=10.0, fee_open=0.001,
                   fee_close=0.001, exchange="binance")
original = LocalTrade.calc_profit_ratio
seen = {"off": is_router(original), "off_value": original(trade, 11.0).hex()}
activation.learn_config({"freqtrade_opt": {"level": "aggressive"}})
seen["on"] = is_router(LocalTrade.calc_profit_ratio)
seen["on_value"] = trade.calc_profit_ratio(11.0).hex()
state.flags.disable("trade_math_profit_ratio", "test")
seen["disabled"] = LocalTrade.calc_profit_ratio is original
seen["others_on"] = is_router(LocalTrade.calc_close_trade_value)
activation.learn_config({"freqtrade_opt": {"level": "standard"}})
seen["close_off"] = not is_router(LocalTrade.calc_close_trade_value)
activation.deactivate()
seen["deactivated"] = LocalTrade.calc_close_trade_value.__name__ == "calc_close_trade_value" \\
    and not is_router(LocalTrade.calc_close_trade_value)
print(json.dumps(seen))
"""


def test_a_hot_target_that_is_off_is_not_routed_and_follows_the_flags(run_python):
    seen, _ = run_python(ACTIVATION)
    assert seen == {"off": False, "off_value": seen["on_value"], "on": True,
                    "on_value": seen["off_value"], "disabled": True, "others_on": True,
                    "close_off": True, "deactivated": True}


def test_calls_whose_exception_passes_through_are_not_counted():
    def failing_below(values, x):
        raise KeyError(x)

    opt = hot()
    flags = Flags([opt], Settings(level=OptimizationLevel.STANDARD))
    monitor = Monitor(MonitorSettings(persist=False))
    router = make_router(opt, failing_below, flags, monitor)
    for i in range(2 * SAMPLE_EVERY):
        router([], i)
        with pytest.raises(KeyError):
            router([], "below")
    assert calls(monitor, "hot", "optimized")[0] == 2 * SAMPLE_EVERY
