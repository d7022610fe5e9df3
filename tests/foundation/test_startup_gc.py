"""`startup_gc`: Freqtrade's collector thresholds set at the first Freqtrade import of a Freqtrade
command line when the optimization is on; every other process keeps the interpreter's."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

from freqtrade_opt_plugin.offline.workspace import subprocess_env
from freqtrade_opt_plugin.optimizations import startup_gc


CLI = ["/venv/bin/python", "/venv/bin/freqtrade", "backtesting", "-c", "config.json"]


@pytest.fixture
def default_thresholds():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_on_for_a_command_line_sets_freqtrades_thresholds(default_thresholds):
    assert startup_gc.install({"FREQTRADE_OPT_LEVEL": "standard"}, CLI)
    assert gc.get_threshold() == startup_gc.FREQTRADE_THRESHOLDS
    assert "set at start-up (level standard >= tier standard)" in startup_gc.decision


def test_the_thresholds_are_freqtrades_own(default_thresholds):
    from freqtrade.system.gc_setup import gc_set_threshold

    gc_set_threshold()
    assert gc.get_threshold() == startup_gc.FREQTRADE_THRESHOLDS
    assert startup_gc._source_verified() is None


@pytest.mark.parametrize("environ, argv, reason", [
    ({"FREQTRADE_OPT_LEVEL": "conservative"}, CLI, "level conservative < tier standard"),
    ({"FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_STARTUP_GC": "false"}, CLI,
     "flag off (FREQTRADE_OPT_STARTUP_GC)"),
    ({"FREQTRADE_OPT_STARTUP_GC": "maybe"}, CLI, "is not true or false"),
    ({"FREQTRADE_OPT_LEVEL": "standard"}, ["python", "-c", "pass"],
     "not a freqtrade command line"),
])
def test_off_keeps_the_interpreters_thresholds(default_thresholds, environ, argv, reason):
    assert not startup_gc.install(environ, argv)
    assert gc.get_threshold() == (700, 10, 10)
    assert reason in startup_gc.decision


def test_user_tuned_thresholds_are_left_alone(default_thresholds):
    gc.set_threshold(1234, 5, 6)
    assert not startup_gc.install({"FREQTRADE_OPT_LEVEL": "standard"}, CLI)
    assert gc.get_threshold() == (1234, 5, 6)
    assert "already tuned to (1234, 5, 6)" in startup_gc.decision


def test_an_unverified_gc_set_threshold_is_not_anticipated(default_thresholds, monkeypatch):
    monkeypatch.setattr(startup_gc, "_FINGERPRINTS", {"2026.9": "0" * 16})
    assert not startup_gc.install({"FREQTRADE_OPT_LEVEL": "standard"}, CLI)
    assert gc.get_threshold() == (700, 10, 10)
    assert "gc_set_threshold is not the verified one" in startup_gc.decision


CHILD = """
import gc, json, sys
sys.orig_argv[:] = [sys.executable, "-m", "freqtrade", "--version"]
before = gc.get_threshold()
import freqtrade.configuration  # the start-up hook decides at the first Freqtrade module
from freqtrade_opt_plugin.optimizations import startup_gc
print(json.dumps({"before": before, "after": gc.get_threshold(), "why": startup_gc.decision}))
"""


@pytest.mark.parametrize("level, expected", [("standard", [50_000, 500, 1000]),
                                             ("disabled", [700, 10, 10])])
def test_the_start_up_hook_applies_it_in_a_fresh_interpreter(level, expected):
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("FREQTRADE_OPT_")}
    proc = subprocess.run([sys.executable, "-c", CHILD], env={**env, "FREQTRADE_OPT_LEVEL": level},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["before"] == [700, 10, 10]
    assert seen["after"] == expected, seen["why"]
