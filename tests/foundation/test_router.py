"""Router: keeps the original's identity, falls back on pristine inputs, counts, disables."""

import inspect

import pandas as pd
import pytest

from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel
from freqtrade_opt_plugin.router import make_router
from freqtrade_opt_plugin.settings import Settings


def original(frame: pd.DataFrame, frames: dict, scale: float = 2.0) -> pd.DataFrame:
    """Adds a column and stores a result (side effects a replacement must reproduce)."""
    frame["scaled"] = frame["close"] * scale
    frames["result"] = frame["scaled"].sum()
    return frame


def route(replacement, *, threshold=3, propagates=()):
    o = Optimization(name="demo", target="m:original", replacement=replacement,
                     tier=OptimizationLevel.CONSERVATIVE, fingerprints={},
                     propagates=propagates)
    flags = Flags([o], Settings(level=OptimizationLevel.STANDARD, error_threshold=threshold))
    monitor = Monitor(MonitorSettings(persist=False))
    return make_router(o, original, flags, monitor), flags, monitor


def inputs():
    frame = pd.DataFrame({"close": [1.0, 2.0, 3.0]})
    return frame, {"frame": frame.copy()}


def test_router_looks_like_the_original():
    routed, _, _ = route(original)
    assert routed.__wrapped__ is original
    assert routed.__name__ == "original" and routed.__doc__ == original.__doc__
    assert inspect.signature(routed) == inspect.signature(original)


def test_optimized_path_is_used_and_recorded():
    calls = []

    def replacement(frame, frames, scale=2.0):
        calls.append(1)
        return original(frame, frames, scale)

    routed, _, monitor = route(replacement)
    frame, frames = inputs()
    routed(frame, frames, scale=3.0)
    assert calls == [1] and frames["result"] == 18.0
    assert monitor.stats("demo")["optimized"].calls == 1


@pytest.mark.parametrize("stage", ["before", "partial", "end"])
def test_failure_at_any_stage_returns_original_result_on_pristine_inputs(stage):
    def broken(frame, frames, scale=2.0):
        if stage == "before":
            raise RuntimeError("before")
        frame["scaled"] = -1.0            # half-done side effects...
        frame.loc[0, "close"] = 999.0
        frames["junk"] = 1
        del frames["frame"]["close"]
        if stage == "partial":
            raise RuntimeError("partial")
        frame["extra"] = 0
        raise RuntimeError("end")

    routed, flags, monitor = route(broken)
    frame, frames = inputs()
    expected_frame, expected_frames = inputs()
    expected = original(expected_frame, expected_frames, 2.0)

    result = routed(frame, frames)
    pd.testing.assert_frame_equal(result, expected, check_exact=True)
    pd.testing.assert_frame_equal(frame, expected_frame, check_exact=True)
    assert frames.keys() == expected_frames.keys()
    pd.testing.assert_frame_equal(frames["frame"], expected_frames["frame"], check_exact=True)
    assert result is frame  # same object identity as the caller's
    stats = monitor.stats("demo")
    assert (stats["optimized"].errors, stats["optimized"].fallbacks) == (1, 1)
    assert stats["original"].calls == 1 and flags.errors["demo"] == 1


def test_threshold_switches_optimization_off():
    def broken(*args, **kwargs):
        raise ValueError("nope")

    routed, flags, monitor = route(broken, threshold=2)
    for _ in range(4):
        routed(*inputs())
    assert monitor.stats("demo")["optimized"].calls == 2
    assert monitor.stats("demo")["original"].calls == 4
    assert flags.decisions["demo"].reason.startswith("auto-disabled: 2 errors")


def test_declared_exceptions_propagate_like_the_original():
    class Abort(Exception):
        pass

    def aborting(*args, **kwargs):
        raise Abort

    routed, flags, _ = route(aborting, propagates=(Abort,))
    with pytest.raises(Abort):
        routed(*inputs())
    assert flags.errors["demo"] == 0


def test_original_errors_propagate_unchanged():
    routed, _, _ = route(original)
    with pytest.raises(KeyError):
        routed(pd.DataFrame({"open": [1.0]}), {})


def test_original_called_inside_a_replacement_raises_once_and_is_not_counted():
    from freqtrade_opt_plugin.router import call_original

    calls = []

    def failing_original(frame, frames, scale=2.0):
        calls.append(1)
        raise KeyError("close")

    def caching(frame, frames, scale=2.0):  # e.g. a cache miss running the original
        return call_original(failing_original, frame, frames, scale)

    routed, flags, monitor = route(caching)
    with pytest.raises(KeyError):
        routed(pd.DataFrame({"open": [1.0]}), {})
    assert calls == [1]  # not run a second time as a fallback
    assert flags.errors["demo"] == 0


def test_error_the_original_also_raises_is_not_counted():
    def strict(frame, frames, scale=2.0):
        raise KeyError("close")  # the original raises too on this input

    routed, flags, monitor = route(strict)
    with pytest.raises(KeyError):
        routed(pd.DataFrame({"open": [1.0]}), {})
    assert flags.errors["demo"] == 0
    assert monitor.stats("demo")["optimized"].errors == 0


def shadow_route(replacement, percentage=100):
    o = Optimization(name="demo", target="m:original", replacement=replacement,
                     tier=OptimizationLevel.CONSERVATIVE, fingerprints={})
    flags = Flags([o], Settings(level=OptimizationLevel.EXPERIMENTAL,
                                shadow_percentage=percentage))
    return make_router(o, original, flags, Monitor(MonitorSettings(persist=False))), flags


@pytest.mark.parametrize("wrong", ["value", "type", "side effect", "raises"])
def test_shadow_mode_returns_the_original_and_disables_on_any_difference(wrong):
    def replacement(frame, frames, scale=2.0):
        result = original(frame, frames, scale)
        if wrong == "value":
            result.loc[0, "scaled"] = 0.5
        elif wrong == "type":
            frames["result"] = int(frames["result"])
        elif wrong == "side effect":
            frames["extra"] = True
        else:
            raise RuntimeError("bug")
        return result

    routed, flags = shadow_route(replacement)
    frame, frames = inputs()
    expected_frame, expected_frames = inputs()
    expected = original(expected_frame, expected_frames)
    result = routed(frame, frames)
    pd.testing.assert_frame_equal(result, expected, check_exact=True)
    assert frames.keys() == expected_frames.keys()
    assert type(frames["result"]) is type(expected_frames["result"])
    assert flags.decisions["demo"].reason.startswith("auto-disabled: shadow mismatch")
    assert not flags.use_optimized("demo")


def test_shadow_mode_keeps_an_exact_optimization():
    routed, flags = shadow_route(original)
    for _ in range(5):
        routed(*inputs())
    assert flags.decisions["demo"].active
