"""What ``freqtrade-opt status`` shows about the fast loop: its guard and latest decision."""

from __future__ import annotations


def test_status_details_show_the_guard_and_the_latest_decision(monkeypatch):
    from freqtrade_opt_plugin.commands.status import _details
    from freqtrade_opt_plugin.optimizations import fast_loop
    from freqtrade_opt_plugin.optimizations.fast_loop import guard

    details = _details(fast_loop.OPTIMIZATION)
    assert details is not None and details["guard"] == "verified"
    decisions = fast_loop.Decisions()
    monkeypatch.setattr(fast_loop, "DECISIONS", decisions)
    decisions.record("S", "not eligible: dynamic pairlist", fast=False)
    details = _details(fast_loop.OPTIMIZATION)
    assert details["last_decision"] == "S: not eligible: dynamic pairlist"
    assert details["runs"] == {"fast": 0, "original": 1}

    monkeypatch.setattr(guard, "FINGERPRINTS", {**guard.FINGERPRINTS, "x.y:z": "0" * 16})
    guard.mismatches.cache_clear()
    try:
        assert _details(fast_loop.OPTIMIZATION)["guard"] == "unverified: x.y:z"
    finally:
        monkeypatch.undo()
        guard.mismatches.cache_clear()
