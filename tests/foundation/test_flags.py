"""Flags: reasons per level, explicit flags, deterministic monotone rollout, auto-disable."""

import pytest

from freqtrade_opt_plugin.flags import Flags, bucket, evaluate
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel
from freqtrade_opt_plugin.settings import Settings


def opt(name="demo", tier=OptimizationLevel.STANDARD, percentage=100):
    return Optimization(name=name, target="m:f", replacement=lambda: None, tier=tier,
                        fingerprints={}, default_percentage=percentage)


@pytest.mark.parametrize("level", list(OptimizationLevel))
def test_level_against_tier(level):
    decision = evaluate(opt(), Settings(level=level), None)
    assert decision.active is (level >= OptimizationLevel.STANDARD)
    assert level.name.lower() in decision.reason and "standard" in decision.reason


def test_explicit_flags_and_rollout_zero():
    o = opt()
    assert evaluate(o, Settings(enabled={"demo": True}, sources={"demo.enabled": "env"}),
                    None).reason == "flag on (env)"
    off = evaluate(o, Settings(level=OptimizationLevel.EXPERIMENTAL, enabled={"demo": False}), None)
    assert not off.active and off.reason.startswith("flag off")
    zero = evaluate(o, Settings(level=OptimizationLevel.EXPERIMENTAL, percentage={"demo": 0}), None)
    assert not zero.active and zero.reason == "rollout 0%"
    bad = evaluate(o, Settings(level=OptimizationLevel.EXPERIMENTAL, invalid={"demo": "x"}), None)
    assert not bad.active and "invalid setting" in bad.reason
    auto = evaluate(o, Settings(level=OptimizationLevel.EXPERIMENTAL), "3 errors")
    assert not auto.active and auto.reason == "auto-disabled: 3 errors"


def test_buckets_are_deterministic_seedable_and_monotone():
    calls = range(2000)
    assert [bucket(0, "a", c) for c in calls] == [bucket(0, "a", c) for c in calls]
    assert [bucket(0, "a", c) for c in calls] != [bucket(1, "a", c) for c in calls]
    assert {bucket(0, "a", c) for c in calls} <= set(range(1, 101))
    enabled_at = {p: {c for c in calls if bucket(0, "a", c) <= p} for p in (10, 50, 90)}
    assert enabled_at[10] <= enabled_at[50] <= enabled_at[90]
    assert 0.4 < len(enabled_at[50]) / len(calls) < 0.6


def test_partial_rollout_splits_calls():
    flags = Flags([opt()], Settings(level=OptimizationLevel.STANDARD, percentage={"demo": 25}))
    share = sum(flags.use_optimized("demo") for _ in range(4000)) / 4000
    assert 0.2 < share < 0.3


def test_error_threshold_disables_and_persists_through_callback():
    persisted = {}
    flags = Flags([opt()], Settings(level=OptimizationLevel.STANDARD, error_threshold=2),
                  on_disable=persisted.__setitem__)
    flags.record_error("demo", ValueError("boom"))
    assert flags.use_optimized("demo")
    flags.record_error("demo", ValueError("boom"))
    assert not flags.use_optimized("demo")
    assert "2 errors" in flags.decisions["demo"].reason and "boom" in persisted["demo"]
