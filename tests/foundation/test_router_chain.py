"""One Router per target with several candidates: order, per-call choice, `wrapped`, errors."""

import inspect

import pandas as pd
import pytest

from freqtrade_opt_plugin.flags import Flags
from freqtrade_opt_plugin.monitor import Monitor, MonitorSettings
from freqtrade_opt_plugin.registry import Optimization, OptimizationLevel, ordered
from freqtrade_opt_plugin.router import candidates_of, make_router
from freqtrade_opt_plugin.settings import Settings


CALLS: list[str] = []


def original(frame: pd.DataFrame, scale: float = 2.0) -> float:
    """Scales a column in place and returns its sum (a side effect the fallback must undo)."""
    CALLS.append("original")
    frame["close"] = frame["close"] * scale
    return float(frame["close"].sum())


def frame():
    return pd.DataFrame({"close": [1.0, 2.0, 3.0]})


def candidate(name, factory, *, priority=0, propagates=(), shadow=True):
    return Optimization(name=name, target="m:original", factory=factory, priority=priority,
                        tier=OptimizationLevel.CONSERVATIVE, fingerprints={},
                        propagates=propagates, shadow=shadow)


def passing(label):
    """A factory whose replacement notes its call and continues with `wrapped`."""
    def factory(wrapped):
        def replacement(frame, scale=2.0):
            CALLS.append(label)
            return wrapped(frame, scale)
        return replacement
    return factory


def computing(label):
    """A factory whose replacement computes the result itself (never calls `wrapped`)."""
    def factory(wrapped):
        def replacement(frame, scale=2.0):
            CALLS.append(label)
            frame["close"] = frame["close"] * scale
            return float(frame["close"].sum())
        return replacement
    return factory


def failing(label, exc=RuntimeError):
    def factory(wrapped):
        def replacement(frame, scale=2.0):
            CALLS.append(label)
            frame["close"] = -1.0  # a half-done side effect the snapshot must undo
            raise exc(label)
        return replacement
    return factory


def route(*opts, enabled=None, level=OptimizationLevel.STANDARD, threshold=3, shadow=10):
    flags = Flags(opts, Settings(level=level, enabled=enabled or {}, error_threshold=threshold,
                                 shadow_percentage=shadow))
    monitor = Monitor(MonitorSettings(persist=False))
    return make_router(list(opts), original, flags, monitor), flags, monitor


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


def calls(monitor, name, path):
    stats = monitor.stats(name).get(path)
    return 0 if stats is None else stats.calls


def test_order_is_priority_then_name():
    a, b, c = (candidate("b_fast", passing("b")), candidate("a_cache", passing("a"), priority=100),
               candidate("a_fast", passing("c")))
    assert [o.name for o in ordered([a, b, c])] == ["a_cache", "a_fast", "b_fast"]
    routed, _, _ = route(a, b, c)
    assert [o.name for o in candidates_of(routed)] == ["a_cache", "a_fast", "b_fast"]


def test_router_keeps_the_originals_identity_with_several_candidates():
    routed, _, _ = route(candidate("cache", passing("cache"), priority=100),
                         candidate("fast", computing("fast")))
    assert routed.__wrapped__ is original and routed.__name__ == "original"
    assert inspect.signature(routed) == inspect.signature(original)
    assert inspect.unwrap(routed) is original


def test_factory_is_called_once_with_a_wrapped_like_the_original():
    seen = []

    def factory(wrapped):
        seen.append(wrapped)
        return wrapped

    routed, _, _ = route(candidate("plain", factory))
    routed(frame())
    routed(frame())
    assert len(seen) == 1
    assert seen[0].__name__ == "original"
    assert inspect.signature(seen[0]) == inspect.signature(original)


def test_outer_cache_hit_returns_before_the_inner_candidate_runs():
    store = {}

    def cache(wrapped):
        def replacement(frame, scale=2.0):
            CALLS.append("cache")
            if "hit" not in store:
                store["hit"] = wrapped(frame, scale)
            return store["hit"]
        return replacement

    routed, _, monitor = route(candidate("cache", cache, priority=100),
                               candidate("fast", computing("fast")))
    assert routed(frame()) == 12.0
    assert routed(frame()) == 12.0
    assert CALLS == ["cache", "fast", "cache"]  # the miss ran the inner candidate, not original
    assert calls(monitor, "cache", "optimized") == 2 and calls(monitor, "fast", "optimized") == 1


def test_a_candidate_whose_flag_is_off_is_skipped_for_the_next_one():
    """The first registered (here: outermost) candidate's flag is off: the next one runs."""
    routed, _, monitor = route(candidate("cache", passing("cache"), priority=100),
                               candidate("fast", computing("fast")),
                               enabled={"cache": False})
    assert routed(frame()) == 12.0
    assert CALLS == ["fast"]
    assert calls(monitor, "cache", "original") == 1  # "what runs without it": the fast path
    assert calls(monitor, "fast", "optimized") == 1


def test_no_candidate_chosen_runs_the_original():
    routed, _, monitor = route(candidate("cache", passing("cache"), priority=100),
                               candidate("fast", computing("fast")),
                               level=OptimizationLevel.DISABLED)
    assert routed(frame()) == 12.0
    assert CALLS == ["original"]
    assert calls(monitor, "fast", "original") == 1


def test_outer_failure_falls_back_to_the_chain_below_and_counts_only_the_outer():
    routed, flags, monitor = route(candidate("cache", failing("cache"), priority=100),
                                   candidate("fast", computing("fast")), threshold=2)
    f = frame()
    assert routed(f) == 12.0
    assert f["close"].tolist() == [2.0, 4.0, 6.0]  # the snapshot undid the half-done write
    assert CALLS == ["cache", "fast"]
    assert flags.errors == {"cache": 1, "fast": 0}
    assert monitor.stats("cache")["optimized"].fallbacks == 1
    routed(frame())
    assert not flags.decisions["cache"].active and flags.decisions["fast"].active
    CALLS.clear()
    routed(frame())
    assert CALLS == ["fast"]


def test_inner_failure_is_the_inner_ones_error_not_the_outers():
    routed, flags, monitor = route(candidate("cache", passing("cache"), priority=100),
                                   candidate("fast", failing("fast")))
    f = frame()
    assert routed(f) == 12.0
    assert f["close"].tolist() == [2.0, 4.0, 6.0]
    assert CALLS == ["cache", "fast", "original"]
    assert flags.errors == {"cache": 0, "fast": 1}
    assert monitor.stats("cache")["optimized"].errors == 0


def test_an_error_of_the_original_passes_through_every_layer_once_uncounted():
    routed, flags, _ = route(candidate("cache", passing("cache"), priority=100),
                             candidate("fast", passing("fast")))
    with pytest.raises(KeyError):
        routed(pd.DataFrame({"open": [1.0]}))
    assert CALLS == ["cache", "fast", "original"]  # the original ran once, no fallback rerun
    assert flags.errors == {"cache": 0, "fast": 0}


def test_declared_exceptions_pass_through_a_chain():
    class Abort(Exception):
        pass

    routed, flags, _ = route(candidate("cache", passing("cache"), priority=100),
                             candidate("fast", failing("fast", Abort), propagates=(Abort,)))
    with pytest.raises(Abort):
        routed(frame())
    assert flags.errors == {"cache": 0, "fast": 0}


def test_an_error_marked_by_another_router_is_still_this_ones_failure():
    """Only exceptions from this layer's own `wrapped` pass through; another target's do not."""
    inner_routed, _, _ = route(candidate("inner", passing("inner")))

    def outer(wrapped):
        def replacement(frame, scale=2.0):
            inner_routed(pd.DataFrame({"open": [1.0]}))  # raises KeyError from *its* original
        return replacement

    routed, flags, _ = route(candidate("outer", outer))
    assert routed(frame()) == 12.0  # the outer failure fell back to the original
    assert flags.errors["outer"] == 1


def test_shadow_mode_compares_a_candidate_with_the_chain_below():
    def wrong(wrapped):
        def replacement(frame, scale=2.0):
            return wrapped(frame, scale) + 1
        return replacement

    routed, flags, _ = route(candidate("cache", wrong, priority=100),
                             candidate("fast", computing("fast"), shadow=False),
                             level=OptimizationLevel.EXPERIMENTAL, shadow=100)
    f = frame()
    assert routed(f) == 12.0
    assert f["close"].tolist() == [2.0, 4.0, 6.0]
    assert flags.decisions["cache"].reason.startswith("auto-disabled: shadow mismatch")
    assert flags.decisions["fast"].active


def test_exactly_one_of_replacement_and_factory():
    with pytest.raises(ValueError, match="exactly one"):
        Optimization(name="x", target="m:f", tier=OptimizationLevel.CONSERVATIVE,
                     fingerprints={})
    with pytest.raises(ValueError, match="exactly one"):
        Optimization(name="x", target="m:f", replacement=original, factory=passing("x"),
                     tier=OptimizationLevel.CONSERVATIVE, fingerprints={})


def test_a_candidate_whose_factory_raises_is_left_out_when_asked():
    def broken(wrapped):
        raise RuntimeError("cannot build")

    failed = []
    opts = [candidate("broken", broken, priority=100), candidate("fast", computing("fast"))]
    flags = Flags(opts, Settings(level=OptimizationLevel.STANDARD))
    routed = make_router(opts, original, flags, Monitor(MonitorSettings(persist=False)),
                         on_build_error=lambda opt, exc: failed.append((opt.name, str(exc))))
    assert failed == [("broken", "cannot build")]
    assert [o.name for o in candidates_of(routed)] == ["fast"]
    assert routed(frame()) == 12.0 and CALLS == ["fast"]
    with pytest.raises(RuntimeError, match="cannot build"):
        make_router(opts, original, flags, Monitor(MonitorSettings(persist=False)))
