"""`exit_gc`: the collector is frozen when a backtesting/hyperopt command line exits, after every
other exit handler, only where the plugin is active with it on; everywhere else it is left alone.
Also the command-line detection it shares with `startup_gc`."""

from __future__ import annotations

import pytest

from freqtrade_opt_plugin.optimizations import exit_gc
from freqtrade_opt_plugin.optimizations.command_line import freqtrade_arguments, subcommand


@pytest.mark.parametrize("argv, expected", [
    (["/venv/bin/python", "/venv/bin/freqtrade", "backtesting", "-c", "c.json"],
     ["backtesting", "-c", "c.json"]),
    (["python", "-m", "freqtrade", "hyperopt"], ["hyperopt"]),
    (["python", "-X", "importtime", "-m", "freqtrade_opt_plugin.offline", "backtesting"],
     ["backtesting"]),
    (["python", "-c", "import freqtrade"], None),
    (["python", "-m", "pytest", "tests"], None),
    (["python", "-m", "joblib.externals.loky.backend.popen_loky_posix"], None),
    (["python", "my_script.py", "freqtrade"], None),
    (["python"], None),
])
def test_freqtrade_command_lines_are_recognised(argv, expected):
    assert freqtrade_arguments(argv) == expected


@pytest.mark.parametrize("argv, expected", [
    (["python", "/venv/bin/freqtrade", "backtesting", "--strategy", "S"], "backtesting"),
    (["python", "-m", "freqtrade", "-V"], None),
    (["python", "-m", "freqtrade", "trade", "-c", "c.json"], "trade"),
    (["python", "-m", "pytest", "backtesting"], None),
])
def test_subcommand(argv, expected):
    assert subcommand(argv) == expected


@pytest.mark.parametrize("argv, registered", [
    (["python", "/venv/bin/freqtrade", "backtesting", "-c", "c.json"], True),
    (["python", "-m", "freqtrade", "hyperopt", "--epochs", "5"], True),
    (["python", "/venv/bin/freqtrade", "trade"], False),  # a live bot exits as it always did
    (["python", "/venv/bin/freqtrade", "webserver"], False),
    (["python", "-m", "pytest"], False),
])
def test_only_the_commands_it_accelerates_register_the_handler(argv, registered, monkeypatch):
    seen = []
    monkeypatch.setattr(exit_gc.atexit, "register", seen.append)
    monkeypatch.setattr(exit_gc, "_registered", False)
    assert exit_gc.install(argv) is registered
    assert seen == ([exit_gc.freeze_at_exit] if registered else [])


# Registered before the first Freqtrade import, so it runs after exit_gc's handler.
CHILD = """
import atexit, gc, json, sys
sys.orig_argv[:] = [sys.executable, "-m", "freqtrade", {command!r}, "-c", "config.json"]
atexit.register(lambda: print(json.dumps({{
    "frozen": gc.get_freeze_count() > 0,
    "why": getattr(sys.modules.get("freqtrade_opt_plugin.optimizations.exit_gc"), "decision",
                   "exit_gc not loaded")}})))
import freqtrade.main
{before_activation}
import freqtrade.optimize.backtesting  # activates the plugin
"""


@pytest.mark.parametrize("command, env, before_activation, frozen, why", [
    ("backtesting", {"FREQTRADE_OPT_LEVEL": "standard"}, "", True, "collector frozen at exit"),
    ("hyperopt", {"FREQTRADE_OPT_LEVEL": "standard"}, "", True, "collector frozen at exit"),
    ("backtesting", {"FREQTRADE_OPT_LEVEL": "conservative"}, "", False,
     "level conservative < tier standard"),
    ("backtesting", {"FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_EXIT_GC": "false"}, "",
     False, "flag off"),
    ("backtesting", {"FREQTRADE_OPT_LEVEL": "standard", "FREQTRADE_OPT_AUTOLOAD": "0"}, "",
     False, "exit_gc not loaded"),
    ("trade", {"FREQTRADE_OPT_LEVEL": "standard"}, "", False, "not a "),
    # Another Freqtrade `main` than the verified one: the version guard says no.
    ("backtesting", {"FREQTRADE_OPT_LEVEL": "standard"},
     "freqtrade.main.main = freqtrade.main.setup_logging_pre", False,
     "source differs from every verified version"),
])
def test_exit_in_a_fresh_interpreter(run_python, command, env, before_activation, frozen, why):
    out, _ = run_python(CHILD.format(command=command, before_activation=before_activation), **env)
    assert out["frozen"] is frozen, out["why"]
    assert why in out["why"]
